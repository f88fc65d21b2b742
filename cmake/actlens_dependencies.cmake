# Every dependency is a Debian 12 package (see README "Dependencies"); .ci/run installs them.
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(xtl REQUIRED)
find_package(xsimd 8 REQUIRED)
find_package(xtensor 0.24 REQUIRED)
find_package(fmt 9 REQUIRED)
# nlohmann-json: <nlohmann/json_fwd.hpp> for the notebook displays (report/display.hpp return
# nlohmann::json, as xeus asks); the tests, examples/cli and examples/server use all of it. The library
# itself reads and writes JSON with io/json.hpp.
find_package(nlohmann_json 3 REQUIRED)
# PCRE2 (Debian libpcre2-dev) has no CMake package there, only pkg-config: GPT-2's pre-tokenizer.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
# utf8proc (Debian libutf8proc-dev), pkg-config only as well: Unicode normalisation (NFC, NFKC, ...)
# and character categories for Hugging Face tokenizer.json normalizers and pre-tokenizers.
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
if(ACTLENS_OPENMP)
  find_package(OpenMP)
endif()
