// actlens/tokenizer/load.hpp: load_tokenizer(path) picks the format, and `tokenizer` gives every
// supported tokenizer one interface.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/tokenizer/bpe.hpp>
#include <actlens/tokenizer/gguf_vocab.hpp>
#include <actlens/tokenizer/hf_tokenizer.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace actlens {

/// Any supported tokenizer: a llama2.c tokenizer.bin, GPT-2's vocab.json + merges.txt, or a Hugging
/// Face tokenizer.json. Const methods are thread-safe.
class tokenizer {
public:
    explicit tokenizer(llama2c_tokenizer t) : m_impl(std::move(t)) {}
    explicit tokenizer(bpe_tokenizer t) : m_impl(std::move(t)) {}
    explicit tokenizer(hf_tokenizer t) : m_impl(std::move(t)) {}

    /// Token ids of `text`. `bos` adds the beginning-of-sequence token where the format has one
    /// (llama2.c's id 1; a tokenizer.json's post-processor tokens, such as Llama 2's <s>; GPT-2 has
    /// none and ignores it). Special tokens written in the text are ordinary characters.
    std::vector<std::int32_t> encode(std::string_view text, bool bos = true) const {
        if (auto* l = std::get_if<llama2c_tokenizer>(&m_impl)) return l->encode(text, bos);
        if (auto* h = std::get_if<hf_tokenizer>(&m_impl)) return h->encode(text, bos);
        return std::get<bpe_tokenizer>(m_impl).encode(text);
    }
    std::string decode(const std::vector<std::int32_t>& ids) const {
        return std::visit([&](const auto& t) { return t.decode(ids); }, m_impl);
    }
    std::size_t vocab_size() const noexcept {
        return std::visit([](const auto& t) { return t.vocab_size(); }, m_impl);
    }
    /// The end-of-sequence id, if the vocabulary has one.
    std::optional<std::int32_t> eos_id() const {
        if (auto* l = std::get_if<llama2c_tokenizer>(&m_impl)) return l->eos_id();
        if (auto* h = std::get_if<hf_tokenizer>(&m_impl)) return h->eos_id();
        return std::get<bpe_tokenizer>(m_impl).eos_id();
    }
    const llama2c_tokenizer* as_llama2c() const noexcept { return std::get_if<llama2c_tokenizer>(&m_impl); }
    const bpe_tokenizer* as_bpe() const noexcept { return std::get_if<bpe_tokenizer>(&m_impl); }
    const hf_tokenizer* as_hf() const noexcept { return std::get_if<hf_tokenizer>(&m_impl); }

private:
    std::variant<llama2c_tokenizer, bpe_tokenizer, hf_tokenizer> m_impl;
};

/// The llama2.c tokenizer file of a directory without a GPT-2 vocabulary (no tokenizer.json or
/// vocab.json): tokenizer.bin, or else the one file named tok*.bin. Empty if there is none.
inline std::optional<std::string> llama2c_tokenizer_in(const std::string& directory) {
    namespace fs = std::filesystem;
    const fs::path dir(directory);
    std::error_code ec;
    if (fs::exists(dir / "tokenizer.json", ec) || fs::exists(dir / "vocab.json", ec)) return std::nullopt;
    if (fs::is_regular_file(dir / "tokenizer.bin", ec)) return (dir / "tokenizer.bin").string();
    std::optional<std::string> found;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (!entry.is_regular_file(ec) || name.rfind("tok", 0) != 0 || entry.path().extension() != ".bin") continue;
        if (found) return std::nullopt; // two candidates: let the caller name the file
        found = entry.path().string();
    }
    return found;
}

/// Loads a tokenizer: a tokenizer.json file or a directory holding one (hf_tokenizer), a directory
/// with vocab.json + merges.txt (GPT-2 BPE), a GGUF file's embedded llama or gpt2 vocabulary
/// (tokenizer/gguf_vocab.hpp), a llama2.c tokenizer.bin (any other file), or a directory holding
/// one (see llama2c_tokenizer_in). `vocab_size` checks a llama2.c or GGUF vocabulary against its
/// model. Throws actlens::error (io.201) for a missing path. A template (of nothing) only so that the
/// loaders are compiled where it is called (README "Compile time").
template <class Deferred = void>
tokenizer load_tokenizer(const std::string& path, std::optional<std::size_t> vocab_size = {}) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) fail(errc::file_open, "load_tokenizer: '{}' does not exist", path);
    const bool is_json = fs::path(path).extension() == ".json";
    if (fs::is_directory(path, ec)) {
        // A llama2.c model directory (stories260K/ holds tok512.bin) has no JSON vocabulary.
        if (const auto bin = llama2c_tokenizer_in(path)) return tokenizer(llama2c_tokenizer::load(*bin, vocab_size));
        if (fs::exists(fs::path(path) / "tokenizer.json", ec)) return tokenizer(load_hf_tokenizer(path));
        return tokenizer(load_bpe_tokenizer(path));
    }
    if (is_json) return tokenizer(hf_tokenizer::load(path));
    if (io::is_gguf_file(path)) {
        const io::gguf_file file(path);
        if (file.get_string("tokenizer.ggml.model", "") == "gpt2") {
            tokenizer t(load_gguf_bpe_tokenizer(file));
            // Fewer tokens than the model's embedding rows is harmless (padding); more would give ids
            // the model has no row for.
            if (vocab_size && t.vocab_size() > *vocab_size)
                fail(errc::tokenizer_file, "'{}': the vocabulary has {} tokens, more than the model's {}", path,
                     t.vocab_size(), *vocab_size);
            return t;
        }
        return tokenizer(load_gguf_tokenizer(file, vocab_size));
    }
    return tokenizer(llama2c_tokenizer::load(path, vocab_size));
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE tokenizer load_tokenizer<void>(const std::string&, std::optional<std::size_t>);
#endif

} // namespace actlens
