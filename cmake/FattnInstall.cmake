# Install rules, the CMake package (find_package(fattn) -> fattn::fattn, fattn::fattn_static)
# and the pkg-config file. Included from src/CMakeLists.txt once both libraries exist.
include(CMakePackageConfigHelpers)

install(TARGETS fattn fattn_static EXPORT fattnTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/fattn.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(FATTN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/fattn)
install(EXPORT fattnTargets NAMESPACE fattn:: DESTINATION ${FATTN_CMAKE_DIR})
# The static library's private dependencies are link-only dependencies of its users.
set(FATTN_CONFIG_WITH_CUDA ${FATTN_HAS_CUDA_OBJECTS})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/fattnConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/fattnConfig.cmake
                              INSTALL_DESTINATION ${FATTN_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/fattnConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/fattnConfig.cmake ${PROJECT_BINARY_DIR}/fattnConfigVersion.cmake
        DESTINATION ${FATTN_CMAKE_DIR})

set(FATTN_PC_PRIVATE_LIBS "-lpthread -lm")
if(FATTN_HAS_CUDA_OBJECTS)
  set(FATTN_PC_PRIVATE_LIBS "${FATTN_PC_PRIVATE_LIBS} -L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -ldl -lrt")
endif()
# The .pc file finds its prefix relative to itself, so `cmake --install --prefix X` relocates it.
file(RELATIVE_PATH FATTN_PC_TO_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" FATTN_PC_TO_PREFIX "${FATTN_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/fattn.pc.in ${PROJECT_BINARY_DIR}/fattn.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/fattn.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
