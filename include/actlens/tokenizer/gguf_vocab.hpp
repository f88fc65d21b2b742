// actlens/tokenizer/gguf_vocab.hpp: the llama (sentencepiece) vocabulary embedded in a GGUF file,
// as a llama2c_tokenizer.
//
// A GGUF with tokenizer.ggml.model = "llama" holds tokenizer.ggml.tokens (pieces, with U+2581 "▁"
// for a space), tokenizer.ggml.scores and optionally tokenizer.ggml.token_type (1 normal, 2
// unknown, 3 control, 4 user-defined, 5 unused, 6 byte). That is the vocabulary llama2.c's
// tokenizer.bin exports from the same sentencepiece model, with "▁" turned into " "; this header
// does the same and encodes with run.c's algorithm (llama2c_tokenizer::encode). Control, unknown
// and unused tokens get the score no merge reaches (-1e10), because llama.cpp never produces them
// from text. llama2c_tokenizer fixes <unk>, <s>, </s> at ids 0, 1, 2 and the byte tokens at 3..258.
//
// Errors (actlens::error, naming the file and the key): io.206 when tokenizer.ggml.model is
// missing or not "llama", or tokenizer.ggml.bos/eos/unknown_token_id are not 1/2/0;
// tokenizer.301 when tokens and scores differ in length, and whatever llama2c_tokenizer's checks
// report (fewer than 259 tokens, byte tokens not at 3..258, a token count that disagrees with the
// model's `vocab_size`).
#pragma once

#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

/// The tokenizer of a GGUF file's embedded llama vocabulary. Throws as the top of this header says.
inline llama2c_tokenizer load_gguf_tokenizer(const io::gguf_file& file,
                                             std::optional<std::size_t> vocab_size = {}) {
    const std::string& path = file.path();
    const std::string model = file.get_string("tokenizer.ggml.model", "");
    if (model != "llama")
        fail(errc::unsupported_format,
             "'{}': tokenizer.ggml.model is '{}'; actlens reads the 'llama' (sentencepiece) vocabulary of a "
             "GGUF",
             path, model.empty() ? std::string("(missing)") : model);
    const std::pair<const char*, std::uint64_t> fixed[] = {
        {"tokenizer.ggml.unknown_token_id", 0}, {"tokenizer.ggml.bos_token_id", 1}, {"tokenizer.ggml.eos_token_id", 2}};
    for (const auto& [key, id] : fixed)
        if (file.contains(key) && file.get_uint(key) != id)
            fail(errc::unsupported_format, "'{}': {} = {}; the llama vocabulary actlens reads has it at id {}", path,
                 key, file.get_uint(key), id);

    const std::string what_tokens = "'" + path + "': tokenizer.ggml.tokens";
    std::vector<std::string> pieces = file.value("tokenizer.ggml.tokens").to_strings(what_tokens);
    const std::vector<double> scores64 =
        file.value("tokenizer.ggml.scores").to_doubles("'" + path + "': tokenizer.ggml.scores");
    if (scores64.size() != pieces.size())
        fail(errc::tokenizer_file, "'{}': {} tokens but {} scores", path, pieces.size(), scores64.size());
    std::vector<std::int64_t> types;
    if (file.contains("tokenizer.ggml.token_type")) {
        types = file.value("tokenizer.ggml.token_type").to_ints("'" + path + "': tokenizer.ggml.token_type");
        if (types.size() != pieces.size())
            fail(errc::tokenizer_file, "'{}': {} tokens but {} token types", path, pieces.size(), types.size());
    }
    if (vocab_size && *vocab_size != pieces.size())
        fail(errc::tokenizer_file, "'{}': the vocabulary has {} tokens, the model {}", path, pieces.size(),
             *vocab_size);

    static const std::string space_mark = "\xe2\x96\x81"; // U+2581, sentencepiece's space
    std::vector<float> scores(pieces.size());
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        std::string& p = pieces[i];
        for (std::size_t at = p.find(space_mark); at != std::string::npos; at = p.find(space_mark, at + 1))
            p.replace(at, space_mark.size(), " ");
        const bool never_merged = !types.empty() && (types[i] == 2 || types[i] == 3 || types[i] == 5);
        scores[i] = never_merged ? detail::llama2c::no_merge_score : static_cast<float>(scores64[i]);
    }
    return llama2c_tokenizer::from_pieces(std::move(pieces), std::move(scores), path);
}

inline llama2c_tokenizer load_gguf_tokenizer(const std::string& path, std::optional<std::size_t> vocab_size = {}) {
    return load_gguf_tokenizer(io::gguf_file(path), vocab_size);
}

} // namespace actlens
