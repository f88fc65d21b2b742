# Every dependency is a Debian 12 package (see README "Dependencies"); .ci/run installs them.
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(xtl REQUIRED)
find_package(xsimd 8 REQUIRED)
find_package(xtensor 0.24 REQUIRED)
find_package(fmt 9 REQUIRED)
if(ACTLENS_OPENMP)
  find_package(OpenMP)
endif()
