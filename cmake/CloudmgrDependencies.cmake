# Every external dependency, found once, with the Debian 12 package that provides it.
# scripts/deps installs all of them.
find_package(PkgConfig QUIET)
if(NOT PkgConfig_FOUND)
  message(FATAL_ERROR "pkg-config not found: install the Debian package 'pkg-config' (or run scripts/deps)")
endif()

function(cloudmgr_require_package name debian_package)
  find_package(${name} ${ARGN} QUIET)
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR
      "${name} not found: install the Debian package '${debian_package}' (or run scripts/deps)")
  endif()
  message(STATUS "cloudmgr: ${name} ${${name}_VERSION} found")
endfunction()

function(cloudmgr_require_pkgconfig prefix module debian_package)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR
      "${module} (pkg-config) not found: install the Debian package '${debian_package}' (or run scripts/deps)")
  endif()
  message(STATUS "cloudmgr: ${module} ${${prefix}_VERSION} found")
endfunction()

find_package(Threads REQUIRED)
cloudmgr_require_package(fmt libfmt-dev)
cloudmgr_require_pkgconfig(LIBVIRT "libvirt>=9.0" libvirt-dev)
cloudmgr_require_pkgconfig(LIBXML2 libxml-2.0 libxml2-dev)
cloudmgr_require_package(fastcdr libfastcdr-dev)
cloudmgr_require_package(fastrtps libfastrtps-dev)
find_program(FASTDDSGEN fastddsgen)
if(NOT FASTDDSGEN)
  message(FATAL_ERROR "fastddsgen not found: install the Debian package 'fastddsgen' (or run scripts/deps)")
endif()
cloudmgr_require_package(CLI11 libcli11-dev)
cloudmgr_require_package(nlohmann_json nlohmann-json3-dev)
cloudmgr_require_package(SQLite3 libsqlite3-dev)
# SHA-256 of template images, the PKI, and TLS of the tcp transport.
cloudmgr_require_package(OpenSSL libssl-dev)
# cloudctl's charts (PNG and SVG).
cloudmgr_require_pkgconfig(CAIRO cairo libcairo2-dev)
if(CLOUDMGR_BUILD_TESTS)
  cloudmgr_require_package(GTest libgtest-dev)
endif()
if(CLOUDMGR_BUILD_BENCH)
  cloudmgr_require_package(benchmark libbenchmark-dev)
endif()
