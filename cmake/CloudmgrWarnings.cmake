# Warning and sanitizer flags, applied through the interface target cloudmgr_build_flags
# so that third-party code (generated or imported) is not affected.
add_library(cloudmgr_build_flags INTERFACE)
target_compile_options(cloudmgr_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual>
  -Wimplicit-fallthrough -Wformat=2
  # Designated initializers that leave fields at their defaults are the intended style
  # for option structs (HypervisorOptions, VmSpec...).
  -Wno-missing-field-initializers)
if(CLOUDMGR_WERROR)
  target_compile_options(cloudmgr_build_flags INTERFACE -Werror)
endif()
if(CLOUDMGR_SANITIZE)
  target_compile_options(cloudmgr_build_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(cloudmgr_build_flags INTERFACE -fsanitize=address,undefined)
endif()
