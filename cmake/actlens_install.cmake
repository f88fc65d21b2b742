# install(EXPORT) + a package config, so that `find_package(actlens)` works after `cmake --install`.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY include/actlens DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS actlens actlens_compiled EXPORT actlensTargets)
install(EXPORT actlensTargets NAMESPACE actlens:: DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/actlens)

configure_package_config_file(cmake/actlensConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/actlensConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/actlens)
# Not ARCH_INDEPENDENT: actlens::compiled is a static library built for this architecture.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/actlensConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/actlensConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/actlensConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/actlens)
