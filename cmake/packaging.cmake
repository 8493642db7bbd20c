# Installing logstar (docs/packaging.md). Three install components:
#   dev     the C++ client library: static libraries, headers (the generated
#           messages included) and logstarConfig.cmake for find_package(logstar)
#   daemon  logstard, its systemd unit and example configuration
#   tools   the `logstar` command-line tool
# and, from the last two, Debian packages: `cpack -G DEB` in the build tree
# makes logstard_<version>_<arch>.deb and logstar-tools_<version>_<arch>.deb
# from what is already built (tests/package/deb_test.sh).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# `cmake --install` and cpack take the binaries as built: they do not build
# `all` first (cpack runs the preinstall target), so that packaging a tree
# whose programs are built does not also build its tests and benchmarks.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

# ---- dev: the client library for find_package(logstar).
set(_logstar_client_libraries logstar_client logstar_wire logstar_recording logstar_proto)
# Headers are installed under include/logstar/ with the paths they have in
# the tree ("clients/cpp/client.h", "proto/wire/pixels.h",
# "logstar/v1/frame.pb.h"), since they include each other so.
set(_logstar_include ${CMAKE_INSTALL_INCLUDEDIR}/logstar)
foreach(target IN LISTS _logstar_client_libraries)
  # The build tree's include directories (the source root, proto's binary
  # directory) hold for the build only; installed, the one root above.
  get_target_property(_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  set_property(TARGET ${target} PROPERTY INTERFACE_INCLUDE_DIRECTORIES
    "$<BUILD_INTERFACE:${_dirs}>" "$<INSTALL_INTERFACE:${_logstar_include}>")
  string(REPLACE "logstar_" "" _name ${target})
  set_property(TARGET ${target} PROPERTY EXPORT_NAME ${_name})
endforeach()
install(TARGETS ${_logstar_client_libraries} EXPORT logstarTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/clients/cpp/ DESTINATION ${_logstar_include}/clients/cpp
  COMPONENT dev FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_SOURCE_DIR}/proto/wire/pixels.h DESTINATION ${_logstar_include}/proto/wire
  COMPONENT dev)
# The client's headers lock with the project's annotated mutex (header-only).
install(FILES ${PROJECT_SOURCE_DIR}/engine/base/mutex.h DESTINATION ${_logstar_include}/engine/base
  COMPONENT dev)
install(DIRECTORY ${PROJECT_BINARY_DIR}/proto/logstar/v1/ DESTINATION ${_logstar_include}/logstar/v1
  COMPONENT dev FILES_MATCHING PATTERN "*.pb.h")
set(_logstar_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/logstar)
install(EXPORT logstarTargets NAMESPACE logstar:: DESTINATION ${_logstar_cmake_dir} COMPONENT dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/logstarConfig.cmake.in
  ${PROJECT_BINARY_DIR}/logstarConfig.cmake INSTALL_DESTINATION ${_logstar_cmake_dir})
# 0.x: a minor version may change the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/logstarConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/logstarConfig.cmake ${PROJECT_BINARY_DIR}/logstarConfigVersion.cmake
  DESTINATION ${_logstar_cmake_dir} COMPONENT dev)

# ---- daemon and tools.
install(TARGETS logstard RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT daemon)
install(TARGETS logstar RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
# The unit of deploy/systemd for an installed logstard: the binary where it
# is installed (/usr/bin in the package), and the system user `logstar`
# the package makes (postinst) instead of a dynamic one, so that the state
# directory's owner is stable. Made when installing, from the unit as it
# is then; what it replaces is checked here, so that a changed unit fails
# the configure step rather than yield a package that runs the wrong binary.
set(_logstar_unit_dir ${PROJECT_SOURCE_DIR}/deploy/systemd)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_logstar_unit_dir}/logstard.service)
file(READ ${_logstar_unit_dir}/logstard.service _unit)
foreach(_from "ExecStart=/usr/local/bin/logstard " "\nDynamicUser=yes\n")
  string(FIND "${_unit}" "${_from}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "deploy/systemd/logstard.service: no '${_from}' to adapt for the package")
  endif()
endforeach()
install(CODE "
  file(READ \"${_logstar_unit_dir}/logstard.service\" unit)
  string(REPLACE \"ExecStart=/usr/local/bin/logstard \"
    \"ExecStart=\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/logstard \" unit \"\${unit}\")
  string(REPLACE \"\nDynamicUser=yes\n\"
    \"\n# Installed: the system user the package's postinst makes.\nUser=logstar\nGroup=logstar\n\"
    unit \"\${unit}\")
  file(WRITE \"${PROJECT_BINARY_DIR}/package/logstard.service\"
    \"# This copy was installed by the logstard package or cmake --install (cmake/packaging.cmake):\n\"
    \"# it runs the binary installed with it as the system user logstar, not a dynamic user.\n\"
    \"\${unit}\")" COMPONENT daemon)
install(FILES ${PROJECT_BINARY_DIR}/package/logstard.service DESTINATION lib/systemd/system
  COMPONENT daemon)
# /etc, wherever the prefix: the unit reads /etc/logstar/logstard.textproto.
install(FILES ${_logstar_unit_dir}/logstard.textproto DESTINATION /etc/logstar COMPONENT daemon)

# ---- Debian packages (cpack -G DEB): daemon and tools, one package each.
set(CPACK_PACKAGE_NAME logstar)
set(CPACK_PACKAGE_VENDOR "logstar")
set(CPACK_PACKAGE_CONTACT "logstar maintainers <logstar@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_COMPONENTS_ALL daemon tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
# Release binaries without their symbol tables, as the Dockerfile had them.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Depends: the shared libraries the binaries link, as dpkg-shlibdeps maps
# them to Debian's runtime packages (never -dev ones).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME logstard)
# Descriptions: the first line is the synopsis. CPackDeb puts the project's
# summary before a component's description unless that summary is CPack's
# default one: make it so when cpack runs.
file(WRITE ${PROJECT_BINARY_DIR}/package/cpack_project.cmake
  "set(CPACK_PACKAGE_DESCRIPTION_SUMMARY \"\${CPACK_DEFAULT_PACKAGE_DESCRIPTION_SUMMARY}\")\n")
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/package/cpack_project.cmake)
set(CPACK_DEBIAN_DAEMON_DESCRIPTION "logstar daemon: finds atomic columns in a microscope's frame stream
logstard serves the logstar gRPC API (frames in, atomic columns out) on the
computer beside an electron microscope. The package installs a systemd unit
(not started: systemctl enable --now logstard), the example configuration
/etc/logstar/logstard.textproto and the system user logstar, which owns the
session state directory /var/lib/logstar.")
# postinst: the user and the state directory; prerm/postrm: the unit.
# conffiles: the operator's configuration survives upgrades.
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/package/conffiles CONTENT "/etc/logstar/logstard.textproto\n")
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
  ${_logstar_unit_dir}/debian/postinst ${_logstar_unit_dir}/debian/prerm
  ${_logstar_unit_dir}/debian/postrm ${PROJECT_BINARY_DIR}/package/conffiles)
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME logstar-tools)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "logstar command-line tool: atomic columns in microscope images
logstar finds atomic columns in image files (analyze), checks priors
(prior), makes synthetic frames (synth), records and replays frame streams
to logstard (record, replay) and reports a daemon's health (status).")
include(CPack)
