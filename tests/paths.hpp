// Where the tests find the bundled model, the fixtures, the source tree and the built `actlens` tool.
//
// The folders are compiled into tests/paths.cpp only. A test file's command line then holds no
// absolute path, so ccache (CI sets CCACHE_BASEDIR to the checkout) reuses its object in every clone;
// only this one small file is compiled again in a new checkout.
#pragma once

#include <string>
#include <string_view>

namespace actlens::test_paths {

std::string source_dir();  ///< the project's root folder
std::string model_dir();   ///< the bundled model's folder (examples/models/stories260K)
std::string fixture_dir(); ///< tests/fixtures
std::string cli();         ///< the built `actlens` tool, or "" when the examples are not built

/// model_dir() + "/" + file, e.g. model("stories260K.bin").
inline std::string model(std::string_view file) { return model_dir() + "/" + std::string(file); }
/// fixture_dir() + "/" + path, e.g. fixture("gguf").
inline std::string fixture(std::string_view path) { return fixture_dir() + "/" + std::string(path); }

} // namespace actlens::test_paths
