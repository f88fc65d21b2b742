// The folders of tests/paths.hpp, defined by tests/CMakeLists.txt for this file only.
#include "paths.hpp"

namespace actlens::test_paths {

std::string source_dir() { return ACTLENS_SOURCE_DIR; }
std::string model_dir() { return ACTLENS_MODEL_DIR; }
std::string fixture_dir() { return ACTLENS_SOURCE_DIR "/tests/fixtures"; }
#if defined(ACTLENS_CLI)
std::string cli() { return ACTLENS_CLI; }
#else
std::string cli() { return ""; }
#endif

} // namespace actlens::test_paths
