// actlens/model/load.hpp: load_model(path) recognises the checkpoint format and calls its loader.
#pragma once

#include <actlens/error.hpp>
#include <actlens/io/llama2c.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/model/transformer.hpp>

#include <array>
#include <cstring>
#include <filesystem>
#include <string>

namespace actlens {

/// Loads a model: a llama2.c checkpoint (`.bin`). Throws actlens::error (io.201) if the path does
/// not exist and (io.206) naming the format for formats this version does not read yet
/// (a Hugging Face directory, a GGUF file).
inline transformer load_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) fail(errc::file_open, "load_model: '{}' does not exist", path);
    if (fs::is_directory(status))
        fail(errc::unsupported_format,
             "load_model: '{}' is a directory (a Hugging Face checkpoint?); this version reads llama2.c .bin files",
             path);
    {
        io::mapped_file file(path);
        if (file.size() >= 4 && std::memcmp(file.data(), "GGUF", 4) == 0)
            fail(errc::unsupported_format, "load_model: '{}' is a GGUF file; this version reads llama2.c .bin files",
                 path);
    }
    return io::load_llama2c(path);
}

} // namespace actlens
