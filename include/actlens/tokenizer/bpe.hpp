// actlens/tokenizer/bpe.hpp: GPT-2's byte-level BPE tokenizer, loaded from `vocab.json` +
// `merges.txt` (the layout of OpenAI's GPT-2 release and of Hugging Face model folders) or from a
// Hugging Face `tokenizer.json` whose model is BPE. Encodes as OpenAI's encoder.py does:
//
// 1. Pre-tokenization: the text is cut into the matches of GPT-2's pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//    run with PCRE2 (8-bit, UTF + UCP). encoder.py runs it with Python's `regex` module, whose \s
//    is the Unicode White_Space property; PCRE2 10.42's \s also matches U+180E, so the pattern is
//    compiled with \s written as \p{White_Space} (and \S as \P{White_Space}). \p{L} and \p{N} come
//    from PCRE2's Unicode tables (Unicode 14 in PCRE2 10.42): for characters assigned in a later
//    Unicode version, encoder.py with a newer `regex` may group differently. Contractions are
//    case-sensitive ("'S" is not one), as in GPT-2.
// 2. Each pre-token's UTF-8 bytes become symbols through GPT-2's byte-to-unicode table (the 188
//    printable Latin-1 bytes stand for themselves, the other 68 for U+0100 onwards in byte order).
// 3. Merges apply by rank, in rounds like encoder.py: the best-ranked adjacent pair is merged at
//    all its non-overlapping occurrences, left to right, before any pair formed by those merges is
//    considered. For merge lists learned by BPE training (a token is used only after the merge that
//    makes it) this equals the heap order of Hugging Face tokenizers; the two differ only on merge
//    lists that use a token before the merge creating it.
//
// Input that is not valid UTF-8 (encoder.py only takes str, so it has no answer for it): the text
// is split into maximal runs of valid UTF-8 and maximal runs of bytes that start no valid character
// (stray continuation bytes, truncated or overlong sequences, encoded surrogates, values past
// U+10FFFF). Valid runs are pre-tokenized by the pattern, each invalid run is one pre-token of its
// own, merged like any other. So ill-formed bytes act as pre-token boundaries ("a\xFFb" gives "a",
// "\xFF", "b", as PCRE2_MATCH_INVALID_UTF would), encode() takes any bytes, and decode(encode(s))
// == s for every byte string s.
//
// Files. vocab.json is an object {piece: id}; merges.txt has one merge "left right" per line (one
// space), an optional first line starting with "#version", blank lines ignored, CRLF accepted.
// tokenizer.json: model.type "BPE" (or absent), model.vocab as above, model.merges as "left right"
// strings or ["left", "right"] arrays, added_tokens [{id, content, ...}] (tokens not in model.vocab
// extend it). Supported settings, others are rejected: normalizer null; pre_tokenizer ByteLevel
// (add_prefix_space, use_regex honoured); decoder null or ByteLevel; model.dropout null or 0;
// continuing_subword_prefix and end_of_word_suffix null or ""; model.ignore_merges honoured (a
// pre-token that is itself a piece is not merged). post_processor is ignored: encode() returns the
// ids of the text alone, like Hugging Face's encode(text, add_special_tokens=False).
// Load-time rules: ids are integers 0..N-1 for N tokens, each used once; every byte has its token;
// every merge names two pieces of the vocabulary and makes one; a pair listed twice keeps its last
// rank (as encoder.py and Hugging Face do).
//
// Special tokens such as <|endoftext|> are not recognised inside the text (encoder.py does not
// either): "<|endoftext|>" in a prompt is encoded as ordinary characters. Append eos_id() instead.
//
// decode() maps a piece back through the byte table when every character of it is in the table, and
// otherwise returns the piece's own UTF-8 (added tokens such as "<｜begin▁of▁sentence｜>"), as the
// ByteLevel decoder of Hugging Face does.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/tokenizer/detail/bpe_core.hpp>


#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace actlens {

namespace detail::bpe {
struct model;
} // namespace detail::bpe

/// GPT-2's byte-level BPE tokenizer (see the top of this header for the exact rules).
///
/// Immutable after loading: every method is `const` and safe to call concurrently. Copies are cheap
/// and share the loaded vocabulary and the compiled pattern.
class bpe_tokenizer {
public:
    bpe_tokenizer(const bpe_tokenizer&) = default;
    bpe_tokenizer& operator=(const bpe_tokenizer&) = default;
    /// Moving shares like copying, so that a moved-from tokenizer stays usable.
    bpe_tokenizer(bpe_tokenizer&& other) noexcept : m_model(other.m_model) {}
    bpe_tokenizer& operator=(bpe_tokenizer&& other) noexcept {
        m_model = other.m_model;
        return *this;
    }

    /// Loads `vocab.json` and `merges.txt`. Throws actlens::error: io.201 if a file cannot be
    /// opened, tokenizer.301 for anything wrong inside one (empty file, bad JSON, an id that is not
    /// an integer, out of range or used twice, a missing byte token, a malformed merge line or one
    /// naming a piece that is not in the vocabulary); the message names the file and the entry or
    /// line. O(V + M) for V tokens and M merges.
    template <class Deferred = void>
    static bpe_tokenizer load(const std::string& vocab_json_path,
                              const std::string& merges_txt_path);

    /// Loads a Hugging Face `tokenizer.json` whose model is BPE. Same errors as load(), plus
    /// tokenizer.301 for a model type other than "BPE" and for settings this tokenizer does not
    /// implement (named with their field, e.g. `normalizer.type`).
    template <class Deferred = void>
    static bpe_tokenizer load_tokenizer_json(const std::string& path);

    /// Builds a tokenizer from the contents of a vocab.json and a merges.txt already in memory; the
    /// sources name them in errors. Same checks as load().
    template <class Deferred = void>
    static bpe_tokenizer from_vocab_merges(std::string_view vocab_json, std::string_view merges_txt,
                                           const std::string& vocab_source = "<vocab.json>",
                                           const std::string& merges_source = "<merges.txt>");

    /// Builds a tokenizer from the contents of a tokenizer.json. Same checks as
    /// load_tokenizer_json().
    template <class Deferred = void>
    static bpe_tokenizer from_tokenizer_json(std::string_view json,
                                             const std::string& source = "<tokenizer.json>");

    /// Encodes any bytes (UTF-8 or not) to token ids, exactly as GPT-2's encoder.py for valid
    /// UTF-8 (up to the Unicode version of \p{L} and \p{N}, see above). No BOS or EOS is added.
    /// Every id returned is < vocab_size(). Throws only std::bad_alloc, or actlens::error arg.101
    /// if PCRE2 reports a resource limit (which the pattern does not reach in practice). O(n log n)
    /// in the length of `text`.
    std::vector<std::int32_t> encode(std::string_view text) const;

    /// The pre-tokens of `text` (step 1 above, including the prefix space of a tokenizer.json with
    /// add_prefix_space), in order; their concatenation is the text that is merged.
    std::vector<std::string> pre_tokenize(std::string_view text) const;

    /// The bytes of a sequence of ids: the concatenation of token_bytes(id). Throws actlens::error
    /// tokenizer.302 naming the position and the id if one is out of range.
    std::string decode(const std::vector<std::int32_t>& ids) const;

    /// Number of tokens (ids are 0..vocab_size()-1).
    std::size_t vocab_size() const noexcept;

    /// Number of distinct merge rules.
    std::size_t merge_count() const noexcept;

    /// The piece of `id` as written in the vocabulary (byte-level form: "Ġthe" for " the").
    /// Throws tokenizer.302 when out of range.
    const std::string& piece(std::int32_t id) const;

    /// The bytes `id` decodes to (" the" for "Ġthe"). Throws tokenizer.302 when out of range.
    const std::string& token_bytes(std::int32_t id) const;

    /// The id of the piece written exactly `piece` (byte-level form), if any. O(|piece|).
    std::optional<std::int32_t> find_piece(std::string_view piece) const noexcept;

    /// The id of "<|endoftext|>", if the vocabulary has it (GPT-2: 50256).
    std::optional<std::int32_t> eos_id() const noexcept;

    /// The file the vocabulary came from (tokenizer.json or vocab.json), as used in error messages.
    const std::string& source() const noexcept;

private:
    explicit bpe_tokenizer(std::shared_ptr<const detail::bpe::model> model)
        : m_model(std::move(model)) {}

    std::shared_ptr<const detail::bpe::model> m_model;
};

/// Loads a byte-level BPE tokenizer from `path`: a directory holding `tokenizer.json` (preferred)
/// or `vocab.json` + `merges.txt`, or a tokenizer.json file under any name. Throws actlens::error
/// io.201 if the path does not exist or a directory has neither layout, and the errors of the
/// loaders.
template <class Deferred = void>
bpe_tokenizer load_bpe_tokenizer(const std::string& path);

// ------------------------------------------------------------------------------------------------
// Implementation
// ------------------------------------------------------------------------------------------------
// The loaders and everything that reads JSON are templates of nothing (`template <class Deferred =
// void>`): the JSON code is then compiled in the files that load a tokenizer, not in every file that
// includes this header (README "Compile time").

namespace detail::bpe {

/// Everything a tokenizer holds; built once, then only read (shared between copies and threads).
struct model : vocabulary {
    std::vector<std::string> bytes;           // by id, what decode() gives
    merge_table merges;                       // pair_key(left, right) -> rule
    std::array<std::int32_t, 256> byte_ids{}; // id of each byte's one-symbol piece
    std::optional<std::int32_t> eos;
    bool add_prefix_space = false;
    bool use_regex = true;
    bool ignore_merges = false;
    regex pattern;
    std::string source;
};

/// Checks the entries (see set_pieces) and fills the byte-level parts: bytes and byte_ids.
template <class Deferred = void>
void set_vocabulary(model& m, std::vector<vocab_entry>& entries, const std::string& source) {
    set_pieces(m, entries, source);
    m.bytes.resize(m.pieces.size());
    for (std::size_t id = 0; id < m.pieces.size(); ++id)
        m.bytes[id] = piece_bytes(m.pieces[id]);
    std::string symbol;
    for (unsigned b = 0; b < 256; ++b) {
        symbol.clear();
        append_utf8(symbol, char_of_byte[b]);
        const auto id = m.find(symbol);
        if (!id)
            fail(errc::tokenizer_file,
                 "'{}': no token for byte 0x{:02X} (piece {}): a byte-level BPE vocabulary needs "
                 "all 256",
                 source, b, quote_piece(symbol));
        m.byte_ids[b] = *id;
    }
    m.eos = m.find("<|endoftext|>");
}

/// Calls `f(std::string_view)` on each pre-token of `text`, in order.
///
/// The text is cut into maximal runs of valid UTF-8 and runs of bytes that are not, here rather
/// than with PCRE2_MATCH_INVALID_UTF: with that option (or with PCRE2's UTF check) the interpreter
/// validates the rest of the subject on every call, which makes a text of n pre-tokens cost
/// O(n^2) wherever JIT is unavailable. Valid runs are matched with PCRE2_NO_UTF_CHECK, which
/// decode_utf8's strict check makes safe. Matching a run on its own changes nothing: the only
/// lookahead, (?!\S), succeeds at the end of a run, and an ill-formed byte is no \S either.
template <class F>
void for_each_pre_token(const model& m, std::string_view text, F&& f) {
    if (text.empty()) return;
    if (!m.use_regex) {
        f(text);
        return;
    }
    const auto match_valid = [&](std::string_view run) {
        // Every character matches some branch, so matches tile the run; text between them (not
        // reached) would still be kept as a pre-token.
        std::size_t pos = 0;
        for_each_match(m.pattern, run, m.source, [&](std::size_t start, std::size_t end) {
            if (start > pos) f(run.substr(pos, start - pos));
            f(run.substr(start, end - start));
            pos = end;
        });
        if (pos < run.size()) f(run.substr(pos));
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = pos;
        while (end < text.size()) {
            const std::size_t length = decode_utf8(text, end).length;
            if (length == 0) break;
            end += length;
        }
        if (end > pos) match_valid(text.substr(pos, end - pos));
        // Each maximal run of bytes that start no valid character is a pre-token of its own.
        pos = end;
        while (end < text.size() && decode_utf8(text, end).length == 0)
            ++end;
        if (end > pos) f(text.substr(pos, end - pos));
        pos = end;
    }
}

/// Merges one pre-token and appends its ids to `out`.
inline void encode_word(const model& m, std::string_view word, merge_scratch& s,
                        std::vector<std::int32_t>& out) {
    if (m.ignore_merges) {
        s.piece.clear();
        for (const char c : word)
            append_utf8(s.piece, char_of_byte[static_cast<unsigned char>(c)]);
        if (const auto id = m.find(s.piece)) {
            out.push_back(*id);
            return;
        }
    }
    s.symbols.resize(word.size());
    for (std::size_t i = 0; i < word.size(); ++i)
        s.symbols[i] = m.byte_ids[static_cast<unsigned char>(word[i])];
    merge_symbols(m.merges, merge_order::rounds, s, out);
}

inline std::shared_ptr<model> finish(std::shared_ptr<model> m) {
    m->pattern = compile_regex(gpt2_pattern, errc::invalid_argument,
                               "GPT-2's pre-tokenizer pattern (PCRE2 needs Unicode support)");
    return m;
}

/// The "type" of an optional component (normalizer, pre_tokenizer, decoder): "" when null/absent.
template <class Deferred = void>
std::string component_type(const io::json_value& root, const char* key,
                           const std::string& source) {
    const auto it = root.find(key);
    if (!it || it->is_null()) return {};
    if (!it->is_object())
        fail(errc::tokenizer_file, "'{}': {} must be an object or null, not {}", source, key,
             io::detail::json_excerpt(*it));
    const std::string type = optional_string(*it, "type", source, key);
    if (type.empty()) fail(errc::tokenizer_file, "'{}': {} has no \"type\"", source, key);
    return type;
}

} // namespace detail::bpe

template <class Deferred>
bpe_tokenizer bpe_tokenizer::load(const std::string& vocab_json_path,
                                  const std::string& merges_txt_path) {
    const io::mapped_file vocab(vocab_json_path);
    const io::mapped_file merges(merges_txt_path);
    return from_vocab_merges(detail::bpe::as_text(vocab), detail::bpe::as_text(merges),
                             vocab_json_path, merges_txt_path);
}

template <class Deferred>
bpe_tokenizer bpe_tokenizer::load_tokenizer_json(const std::string& path) {
    const io::mapped_file file(path);
    return from_tokenizer_json(detail::bpe::as_text(file), path);
}

template <class Deferred>
bpe_tokenizer bpe_tokenizer::from_vocab_merges(std::string_view vocab_json,
                                               std::string_view merges_txt,
                                               const std::string& vocab_source,
                                               const std::string& merges_source) {
    namespace d = detail::bpe;
    auto m = std::make_shared<d::model>();
    m->source = vocab_source;
    std::vector<d::vocab_entry> entries;
    {
        const io::json_value vocab = d::parse_json<Deferred>(vocab_json, vocab_source);
        d::read_vocab_object(vocab, vocab_source, "", entries);
    }
    d::set_vocabulary(*m, entries, vocab_source);
    m->merges = d::read_merge_rules(*m, d::read_merges_txt(merges_txt, merges_source), merges_source);
    return bpe_tokenizer(d::finish(std::move(m)));
}

template <class Deferred>
bpe_tokenizer bpe_tokenizer::from_tokenizer_json(std::string_view json,
                                                 const std::string& source) {
    namespace d = detail::bpe;
    const io::json_value root = d::parse_json<Deferred>(json, source);
    if (!root.is_object())
        fail(errc::tokenizer_file, "'{}' must hold a JSON object, not {}", source,
             root.type_name());
    const auto model_it = root.find("model");
    if (!model_it || !model_it->is_object())
        fail(errc::tokenizer_file, "'{}' has no \"model\" object", source);
    const io::json_value& model = *model_it;

    const std::string type = d::optional_string(model, "type", source, "model");
    if (!type.empty() && type != "BPE")
        fail(errc::tokenizer_file, "'{}': model.type is \"{}\"; only \"BPE\" is supported", source,
             type);
    if (const auto it = model.find("dropout");
        it && !it->is_null() && !(it->is_number() && it->as_double() == 0.0))
        fail(errc::tokenizer_file, "'{}': model.dropout is {}; only null or 0 is supported", source,
             io::detail::json_excerpt(*it));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (const std::string v = d::optional_string(model, key, source, "model"); !v.empty())
            fail(errc::tokenizer_file, "'{}': model.{} is {}; only null or \"\" is supported",
                 source, key, d::quote_piece(v));

    if (const std::string t = d::component_type(root, "normalizer", source); !t.empty())
        fail(errc::tokenizer_file,
             "'{}': normalizer.type is \"{}\"; only a null normalizer is "
             "supported",
             source, t);
    const std::string pre = d::component_type(root, "pre_tokenizer", source);
    if (pre != "ByteLevel")
        fail(errc::tokenizer_file,
             "'{}': pre_tokenizer.type is \"{}\"; only \"ByteLevel\" is "
             "supported",
             source, pre.empty() ? "null" : pre);
    if (const std::string t = d::component_type(root, "decoder", source);
        !t.empty() && t != "ByteLevel")
        fail(errc::tokenizer_file,
             "'{}': decoder.type is \"{}\"; only null or \"ByteLevel\" is "
             "supported",
             source, t);

    auto m = std::make_shared<d::model>();
    m->source = source;
    const io::json_value& pre_tokenizer = *root.find("pre_tokenizer");
    m->add_prefix_space =
        d::optional_bool(pre_tokenizer, "add_prefix_space", false, source, "pre_tokenizer");
    m->use_regex = d::optional_bool(pre_tokenizer, "use_regex", true, source, "pre_tokenizer");
    m->ignore_merges = d::optional_bool(model, "ignore_merges", false, source, "model");

    std::vector<d::vocab_entry> entries;
    const auto vocab_it = model.find("vocab");
    if (!vocab_it) fail(errc::tokenizer_file, "'{}' has no model.vocab", source);
    d::read_vocab_object(*vocab_it, source, "model.vocab", entries);

    // Added tokens already in model.vocab (GPT-2's <|endoftext|>) must agree with it; the others
    // extend the vocabulary.
    if (const auto added = root.find("added_tokens"); added && !added->is_null()) {
        if (!added->is_array())
            fail(errc::tokenizer_file, "'{}': added_tokens must be an array, not {}", source,
                 added->type_name());
        std::unordered_map<std::string_view, std::int64_t> in_vocab;
        for (const auto& [piece, id_value] : vocab_it->members())
            in_vocab.emplace(piece, d::json_id(id_value, source, "model.vocab"));
        for (std::size_t i = 0; i < added->size(); ++i) {
            const io::json_value& t = (*added)[i];
            const std::string where = fmt::format("added_tokens[{}]", i);
            if (!t.is_object() || !t.contains("content") || !t.at("content").is_string() ||
                !t.contains("id"))
                fail(errc::tokenizer_file,
                     "'{}': {} must be an object with a string \"content\" and an integer \"id\"",
                     source, where);
            const auto& content = t.at("content").as_string();
            const std::int64_t id = d::json_id(t.at("id"), source, where);
            if (const auto v = in_vocab.find(content); v != in_vocab.end()) {
                if (v->second != id)
                    fail(errc::tokenizer_file,
                         "'{}': {} {} has id {}, but model.vocab gives it id {}", source, where,
                         d::quote_piece(content), id, v->second);
                continue;
            }
            entries.push_back({content, id, fmt::format("{} {}", where, d::quote_piece(content))});
        }
    }
    d::set_vocabulary(*m, entries, source);

    const auto merges_it = model.find("merges");
    if (!merges_it) fail(errc::tokenizer_file, "'{}' has no model.merges", source);
    m->merges = d::read_merge_rules(*m, d::read_json_merges(*merges_it, source), source);
    return bpe_tokenizer(d::finish(std::move(m)));
}

inline std::vector<std::int32_t> bpe_tokenizer::encode(std::string_view text) const {
    namespace d = detail::bpe;
    const d::model& m = *m_model;
    std::string prefixed;
    if (m.add_prefix_space && !text.empty() && text.front() != ' ') {
        prefixed.reserve(text.size() + 1);
        prefixed.append(1, ' ').append(text);
        text = prefixed;
    }
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 1);
    d::merge_scratch scratch;
    d::for_each_pre_token(m, text,
                          [&](std::string_view word) { d::encode_word(m, word, scratch, ids); });
    return ids;
}

inline std::vector<std::string> bpe_tokenizer::pre_tokenize(std::string_view text) const {
    const detail::bpe::model& m = *m_model;
    std::string prefixed;
    if (m.add_prefix_space && !text.empty() && text.front() != ' ') {
        prefixed.append(1, ' ').append(text);
        text = prefixed;
    }
    std::vector<std::string> out;
    detail::bpe::for_each_pre_token(m, text, [&](std::string_view w) { out.emplace_back(w); });
    return out;
}

inline std::string bpe_tokenizer::decode(const std::vector<std::int32_t>& ids) const {
    const detail::bpe::model& m = *m_model;
    std::string out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::int32_t id = ids[i];
        if (id < 0 || static_cast<std::size_t>(id) >= m.bytes.size())
            fail(errc::token_out_of_range, "ids[{}] = {} is out of range for '{}' (vocab_size {})",
                 i, id, m.source, m.bytes.size());
        out += m.bytes[static_cast<std::size_t>(id)];
    }
    return out;
}

inline std::size_t bpe_tokenizer::vocab_size() const noexcept { return m_model->pieces.size(); }

inline std::size_t bpe_tokenizer::merge_count() const noexcept { return m_model->merges.size(); }

inline const std::string& bpe_tokenizer::piece(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= m_model->pieces.size())
        fail(errc::token_out_of_range, "token id {} is out of range for '{}' (vocab_size {})", id,
             m_model->source, m_model->pieces.size());
    return m_model->pieces[static_cast<std::size_t>(id)];
}

inline const std::string& bpe_tokenizer::token_bytes(std::int32_t id) const {
    piece(id); // range check
    return m_model->bytes[static_cast<std::size_t>(id)];
}

inline std::optional<std::int32_t>
bpe_tokenizer::find_piece(std::string_view piece) const noexcept {
    return m_model->find(piece);
}

inline std::optional<std::int32_t> bpe_tokenizer::eos_id() const noexcept { return m_model->eos; }

inline const std::string& bpe_tokenizer::source() const noexcept { return m_model->source; }

template <class Deferred>
bpe_tokenizer load_bpe_tokenizer(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status))
        fail(errc::file_open, "cannot load a BPE tokenizer from '{}': no such file or directory",
             path);
    if (!fs::is_directory(status)) return bpe_tokenizer::load_tokenizer_json(path);
    const fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json", ec))
        return bpe_tokenizer::load_tokenizer_json((dir / "tokenizer.json").string());
    if (fs::exists(dir / "vocab.json", ec) && fs::exists(dir / "merges.txt", ec))
        return bpe_tokenizer::load((dir / "vocab.json").string(), (dir / "merges.txt").string());
    fail(errc::file_open,
         "cannot load a BPE tokenizer from directory '{}': it has neither tokenizer.json nor "
         "vocab.json + merges.txt",
         path);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE bpe_tokenizer bpe_tokenizer::load<void>(const std::string&, const std::string&);
ACTLENS_EXTERN_TEMPLATE bpe_tokenizer bpe_tokenizer::load_tokenizer_json<void>(const std::string&);
ACTLENS_EXTERN_TEMPLATE bpe_tokenizer bpe_tokenizer::from_vocab_merges<void>(std::string_view, std::string_view,
                                                                             const std::string&, const std::string&);
ACTLENS_EXTERN_TEMPLATE bpe_tokenizer bpe_tokenizer::from_tokenizer_json<void>(std::string_view, const std::string&);
#endif

} // namespace actlens
