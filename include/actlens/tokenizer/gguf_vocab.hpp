// actlens/tokenizer/gguf_vocab.hpp: the vocabulary embedded in a GGUF file: a "llama"
// (sentencepiece) one as a llama2c_tokenizer, a "gpt2" (byte-level BPE) one as an hf_tokenizer.
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
//
// A GGUF with tokenizer.ggml.model = "gpt2" holds tokenizer.ggml.tokens (byte-level pieces, "Ġthe"),
// tokenizer.ggml.merges ("Ġ t" strings), optionally tokenizer.ggml.token_type, and
// tokenizer.ggml.pre, llama.cpp's name for the pre-tokenizer regular expression of the original
// tokenizer.json. It is assembled into the tokenizer.json it came from and run by hf_tokenizer:
// control tokens (type 3) become special added tokens (matched in text only when asked),
// user-defined ones (type 4) ordinary added tokens; tokenizer.ggml.add_bos_token (with
// bos_token_id) puts BOS before the text when encode() is asked to add special tokens. Known
// tokenizer.ggml.pre names: "gpt-2" (GPT-2's ByteLevel pattern), "llama-bpe" / "llama3" (Llama 3's
// Split pattern, digits in groups of up to three, ignore_merges), "qwen2" / "deepseek-r1-qwen"
// (Qwen 2/3's: digits one by one). As in llama.cpp there is no normalizer: a tokenizer.json's NFC
// (Qwen's) is not in the GGUF, so text that is not in NFC may tokenize differently. Any other name is actlens::error io.206 naming the file, the
// key and the value, rather than a guess at the regular expression.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/io/json.hpp>
#include <actlens/tokenizer/hf_tokenizer.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace actlens {

// The loaders are templates (of nothing) only so that they are compiled where they are called, not
// in every file that includes this header (README "Compile time").

/// The tokenizer of a GGUF file's embedded llama vocabulary. Throws as the top of this header says.
template <class Deferred = void>
llama2c_tokenizer load_gguf_tokenizer(const io::gguf_file& file,
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

template <class Deferred = void>
llama2c_tokenizer load_gguf_tokenizer(const std::string& path, std::optional<std::size_t> vocab_size = {}) {
    return load_gguf_tokenizer(io::gguf_file(path), vocab_size);
}

namespace detail::gguf_vocab {

/// The Split pattern of a tokenizer.ggml.pre name ("" for GPT-2's ByteLevel pattern), and whether
/// the model ignores merges for pre-tokens that are whole pieces (Llama 3).
struct pre_tokenizer_name {
    const char* name;
    const char* pattern;
    bool ignore_merges;
};
inline constexpr const char* llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr const char* qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr pre_tokenizer_name known_pre_tokenizers[] = {
    {"gpt-2", "", false},
    {"llama-bpe", llama3_pattern, true},
    {"llama3", llama3_pattern, true},
    {"qwen2", qwen2_pattern, false},
    {"deepseek-r1-qwen", qwen2_pattern, false},
};

} // namespace detail::gguf_vocab

/// The tokenizer of a GGUF file's embedded "gpt2" (byte-level BPE) vocabulary. Throws as the top of
/// this header says, and the errors of hf_tokenizer::from_document (tokenizer.301) for a vocabulary
/// or merge list it rejects.
template <class Deferred = void>
hf_tokenizer load_gguf_bpe_tokenizer(const io::gguf_file& file) {
    namespace g = detail::gguf_vocab;
    const std::string& path = file.path();
    const std::string model = file.get_string("tokenizer.ggml.model", "");
    if (model != "gpt2")
        fail(errc::unsupported_format, "'{}': tokenizer.ggml.model is '{}'; expected 'gpt2' (byte-level BPE)", path,
             model.empty() ? std::string("(missing)") : model);
    const std::string pre = file.get_string("tokenizer.ggml.pre", "gpt-2");
    const g::pre_tokenizer_name* known = nullptr;
    for (const auto& k : g::known_pre_tokenizers)
        if (pre == k.name) known = &k;
    if (!known)
        fail(errc::unsupported_format,
             "'{}': tokenizer.ggml.pre is {}; actlens knows gpt-2, llama-bpe, llama3, qwen2 and deepseek-r1-qwen",
             path, detail::bpe::quote_piece(pre));

    const std::vector<std::string> tokens =
        file.value("tokenizer.ggml.tokens").to_strings("'" + path + "': tokenizer.ggml.tokens");
    const std::vector<std::string> merges =
        file.value("tokenizer.ggml.merges").to_strings("'" + path + "': tokenizer.ggml.merges");
    std::vector<std::int64_t> types;
    if (file.contains("tokenizer.ggml.token_type")) {
        types = file.value("tokenizer.ggml.token_type").to_ints("'" + path + "': tokenizer.ggml.token_type");
        if (types.size() != tokens.size())
            fail(errc::tokenizer_file, "'{}': {} tokens but {} token types", path, tokens.size(), types.size());
    }

    using json = io::json_value;
    // A token listed twice keeps its last id, as the member of a JSON object written twice would.
    json vocab = json::object();
    std::unordered_map<std::string_view, std::size_t> member_of_token;
    json added = json::array();
    for (std::size_t id = 0; id < tokens.size(); ++id) {
        if (const auto [at, inserted] = member_of_token.emplace(tokens[id], vocab.size()); inserted)
            vocab.append_member(tokens[id], id);
        else
            vocab.set_member(at->second, id);
        const std::int64_t type = types.empty() ? 1 : types[id];
        if (type == 3 || type == 4)
            added.push_back(json::object(
                {{"id", id}, {"content", tokens[id]}, {"special", type == 3}, {"normalized", false}}));
    }
    const json byte_level =
        json::object({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
    json pre_tokenizer;
    if (*known->pattern == '\0') {
        pre_tokenizer = json::object({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}});
    } else {
        pre_tokenizer = json::object(
            {{"type", "Sequence"},
             {"pretokenizers", json::array({json::object({{"type", "Split"},
                                                          {"pattern", json::object({{"Regex", known->pattern}})},
                                                          {"behavior", "Isolated"},
                                                          {"invert", false}}),
                                            byte_level})}});
    }
    json post_processor;
    if (file.contains("tokenizer.ggml.add_bos_token") &&
        file.value("tokenizer.ggml.add_bos_token").as_bool("'" + path + "': tokenizer.ggml.add_bos_token")) {
        const std::uint64_t bos = file.get_uint("tokenizer.ggml.bos_token_id");
        if (bos >= tokens.size())
            fail(errc::tokenizer_file, "'{}': tokenizer.ggml.bos_token_id = {} is out of range ({} tokens)", path, bos,
                 tokens.size());
        const std::string& name = tokens[bos];
        json special_tokens = json::object();
        special_tokens.append_member(
            name, json::object({{"id", name}, {"ids", json::array({bos})}, {"tokens", json::array({name})}}));
        post_processor = json::object(
            {{"type", "TemplateProcessing"},
             {"single", json::array({json::object({{"SpecialToken", json::object({{"id", name}, {"type_id", 0}})}}),
                                     json::object({{"Sequence", json::object({{"id", "A"}, {"type_id", 0}})}})})},
             {"special_tokens", std::move(special_tokens)}});
    }
    json merge_list = json::array();
    for (const std::string& merge : merges) merge_list.push_back(merge);
    // Members appended one by one: an initializer list would copy the vocabulary and merges.
    json bpe_model = json::object({{"type", "BPE"}});
    bpe_model.append_member("vocab", std::move(vocab));
    bpe_model.append_member("merges", std::move(merge_list));
    bpe_model.append_member("ignore_merges", known->ignore_merges);
    json document = json::object({{"normalizer", nullptr}, {"decoder", byte_level}});
    document.append_member("added_tokens", std::move(added));
    document.append_member("pre_tokenizer", std::move(pre_tokenizer));
    document.append_member("post_processor", std::move(post_processor));
    document.append_member("model", std::move(bpe_model));
    return hf_tokenizer::from_document(document, path);
}

template <class Deferred = void>
hf_tokenizer load_gguf_bpe_tokenizer(const std::string& path) {
    return load_gguf_bpe_tokenizer(io::gguf_file(path));
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE llama2c_tokenizer load_gguf_tokenizer<void>(const io::gguf_file&, std::optional<std::size_t>);
ACTLENS_EXTERN_TEMPLATE llama2c_tokenizer load_gguf_tokenizer<void>(const std::string&, std::optional<std::size_t>);
ACTLENS_EXTERN_TEMPLATE hf_tokenizer load_gguf_bpe_tokenizer<void>(const io::gguf_file&);
ACTLENS_EXTERN_TEMPLATE hf_tokenizer load_gguf_bpe_tokenizer<void>(const std::string&);
#endif

} // namespace actlens
