# Fast DDS transport sources (owned by the DDS transport work); included by lib/CMakeLists.txt
# after CLOUDMGR_PRIVATE_DEPS is set and before cloudmgr_objects is linked (same scope).
#
# The wire types are generated from idl/cloudmgr.idl by fastddsgen at build time, into the
# build tree only; nothing outside lib/transport/dds includes them.
set(CLOUDMGR_DDS_GENERATED_DIR ${CMAKE_CURRENT_BINARY_DIR}/generated/dds)
# Tests of the wire conversion (tests/transport/dds.cmake) include the generated headers too.
set(CLOUDMGR_DDS_GENERATED_DIR ${CLOUDMGR_DDS_GENERATED_DIR} CACHE INTERNAL "fastddsgen output of idl/cloudmgr.idl")
set(CLOUDMGR_DDS_GENERATED
  ${CLOUDMGR_DDS_GENERATED_DIR}/cloudmgr.cxx
  ${CLOUDMGR_DDS_GENERATED_DIR}/cloudmgr.h
  ${CLOUDMGR_DDS_GENERATED_DIR}/cloudmgrPubSubTypes.cxx
  ${CLOUDMGR_DDS_GENERATED_DIR}/cloudmgrPubSubTypes.h)
add_custom_command(
  OUTPUT ${CLOUDMGR_DDS_GENERATED}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CLOUDMGR_DDS_GENERATED_DIR}
  COMMAND ${FASTDDSGEN} -replace -d ${CLOUDMGR_DDS_GENERATED_DIR} ${PROJECT_SOURCE_DIR}/idl/cloudmgr.idl
  DEPENDS ${PROJECT_SOURCE_DIR}/idl/cloudmgr.idl
  COMMENT "fastddsgen: generating the wire types from idl/cloudmgr.idl"
  VERBATIM)
# Generated code is third-party style: none of our warning flags, no -Werror.
set_source_files_properties(
  ${CLOUDMGR_DDS_GENERATED_DIR}/cloudmgr.cxx
  ${CLOUDMGR_DDS_GENERATED_DIR}/cloudmgrPubSubTypes.cxx
  PROPERTIES GENERATED TRUE COMPILE_OPTIONS "-w")
target_sources(cloudmgr_objects PRIVATE
  ${CLOUDMGR_DDS_GENERATED}
  transport/dds/dds_transport.cpp
  transport/dds/wire_convert.cpp)
# SYSTEM: warnings from the generated and Fast DDS headers do not fail our -Werror build.
target_include_directories(cloudmgr_objects SYSTEM PRIVATE ${CLOUDMGR_DDS_GENERATED_DIR})
list(APPEND CLOUDMGR_PRIVATE_DEPS fastrtps fastcdr)
