# Installation: headers, the library, a CMake package (find_package(cloudmgr) ->
# cloudmgr::cloudmgr) and a pkg-config file.
include(CMakePackageConfigHelpers)

install(TARGETS cloudmgr EXPORT cloudmgrTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/cloudmgr DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/cloudmgr/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cloudmgr)

set(CLOUDMGR_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/cloudmgr)
install(EXPORT cloudmgrTargets NAMESPACE cloudmgr:: DESTINATION ${CLOUDMGR_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/cloudmgrConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cloudmgrConfig.cmake INSTALL_DESTINATION ${CLOUDMGR_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cloudmgrConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cloudmgrConfig.cmake ${PROJECT_BINARY_DIR}/cloudmgrConfigVersion.cmake
  DESTINATION ${CLOUDMGR_CMAKE_DIR})

# pkgconfig dir -> prefix: one ".." per component of <libdir>/pkgconfig.
file(RELATIVE_PATH CLOUDMGR_PC_UP "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
configure_file(${PROJECT_SOURCE_DIR}/cmake/cloudmgr.pc.in ${PROJECT_BINARY_DIR}/cloudmgr.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cloudmgr.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
