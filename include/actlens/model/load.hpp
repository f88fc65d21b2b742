// actlens/model/load.hpp: load_model(path) recognises the checkpoint format and calls its loader:
// Hugging Face directories (safetensors, sharded or not), GGUF files (llama architecture) and
// llama2.c .bin files.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/io/gguf_model.hpp>
#include <actlens/io/huggingface.hpp>
#include <actlens/io/llama2c.hpp>
#include <actlens/model/transformer.hpp>

#include <array>
#include <filesystem>
#include <string>

namespace actlens {

/// Loads a model, recognising the format from the path:
///   - a directory holding config.json, or a path to a config.json: a Hugging Face checkpoint
///     (model.safetensors or a sharded model.safetensors.index.json; see io/huggingface.hpp);
///   - a file starting with the bytes "GGUF": a llama-architecture GGUF (see io/gguf_model.hpp);
///   - otherwise a llama2.c checkpoint (`.bin`).
/// Throws actlens::error: io.201 if the path does not exist; io.206 naming the format for a
/// directory without config.json and a lone .safetensors file (pass its directory); and whatever
/// the format's loader reports. (A template only so that the loaders are compiled where it is
/// called, or once with actlens::compiled: actlens/compiled.hpp.)
template <class Deferred = void>
transformer load_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) fail(errc::file_open, "load_model: '{}' does not exist", path);
    const fs::path p(path);
    if (fs::is_directory(status)) {
        if (!fs::exists(p / "config.json", ec))
            fail(errc::unsupported_format,
                 "load_model: '{}' is a directory without config.json; a Hugging Face "
                 "checkpoint directory holds config.json and model.safetensors (or "
                 "model.safetensors.index.json and its shards)",
                 path);
        return io::load_huggingface(path);
    }
    if (p.filename() == "config.json") return io::load_huggingface(path);
    const std::string name = p.filename().string();
    const auto ends_with = [&](const std::string& tail) {
        return name.size() >= tail.size() &&
               name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    if (ends_with(".safetensors") || ends_with(".safetensors.index.json"))
        fail(errc::unsupported_format,
             "load_model: '{}' is part of a Hugging Face checkpoint; pass its directory (the one "
             "holding config.json)",
             path);
    if (io::is_gguf_file(path)) return io::load_gguf(path);
    return io::load_llama2c(path);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE transformer load_model<void>(const std::string&);
#endif

} // namespace actlens
