// The test runner: Catch2's session, after printing what a failure report needs to be reproduced:
// the library and dependency versions, the SIMD architecture, and the seed of the random tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <actlens/config.hpp>
#include <actlens/kernels/detail/simd.hpp>

#include <Eigen/Core>
#include <fmt/core.h>
#include <xtensor/xtensor_config.hpp>

int main(int argc, char* argv[]) {
    Catch::Session session;
    if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
    fmt::print("actlens {} | Eigen {}.{}.{} | xtensor {}.{}.{} | xsimd {}.{}.{} ({}) | fmt {} | seed {}\n",
               actlens::version_string, EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION,
               XTENSOR_VERSION_MAJOR, XTENSOR_VERSION_MINOR, XTENSOR_VERSION_PATCH, XSIMD_VERSION_MAJOR,
               XSIMD_VERSION_MINOR, XSIMD_VERSION_PATCH, xsimd::default_arch::name(), FMT_VERSION,
               session.configData().rngSeed);
    return session.run();
}
