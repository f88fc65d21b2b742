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

#include <actlens/error.hpp>
#include <actlens/io/mapped_file.hpp>

#include <nlohmann/json.hpp>

// pcre2.h needs a code unit width; this header calls the 8-bit functions by their explicit `_8`
// names, so it works whatever width an including file chose before.
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#if PCRE2_MAJOR < 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR < 40)
#error "actlens/tokenizer/bpe.hpp needs PCRE2 10.40 or newer (for \\p{White_Space})"
#endif

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
    static bpe_tokenizer load(const std::string& vocab_json_path,
                              const std::string& merges_txt_path);

    /// Loads a Hugging Face `tokenizer.json` whose model is BPE. Same errors as load(), plus
    /// tokenizer.301 for a model type other than "BPE" and for settings this tokenizer does not
    /// implement (named with their field, e.g. `normalizer.type`).
    static bpe_tokenizer load_tokenizer_json(const std::string& path);

    /// Builds a tokenizer from the contents of a vocab.json and a merges.txt already in memory; the
    /// sources name them in errors. Same checks as load().
    static bpe_tokenizer from_vocab_merges(std::string_view vocab_json, std::string_view merges_txt,
                                           const std::string& vocab_source = "<vocab.json>",
                                           const std::string& merges_source = "<merges.txt>");

    /// Builds a tokenizer from the contents of a tokenizer.json. Same checks as
    /// load_tokenizer_json().
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
bpe_tokenizer load_bpe_tokenizer(const std::string& path);

// ------------------------------------------------------------------------------------------------
// Implementation
// ------------------------------------------------------------------------------------------------

namespace detail::bpe {

/// GPT-2's pattern with \s spelled as the White_Space property (what Python's `regex` means by \s).
inline constexpr const char* pre_token_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+)"
    R"(|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+)";

/// The code point that stands for byte `b` in GPT-2's byte-to-unicode table.
constexpr std::uint32_t byte_char(unsigned b) noexcept {
    const auto printable = [](unsigned c) {
        return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
    };
    if (printable(b)) return b;
    std::uint32_t n = 0; // non-printable bytes before b take U+0100, U+0101, ... in byte order
    for (unsigned c = 0; c < b; ++c)
        if (!printable(c)) ++n;
    return 0x100 + n;
}

/// byte_char() of every byte.
constexpr std::array<std::uint16_t, 256> byte_chars() noexcept {
    std::array<std::uint16_t, 256> table{};
    for (unsigned b = 0; b < 256; ++b)
        table[b] = static_cast<std::uint16_t>(byte_char(b));
    return table;
}
inline constexpr std::array<std::uint16_t, 256> char_of_byte = byte_chars();

/// Code points of the table (U+0000..U+0143) mapped back to their byte, -1 for the others.
inline constexpr std::size_t table_end = 0x144;
constexpr std::array<std::int16_t, table_end> char_bytes() noexcept {
    std::array<std::int16_t, table_end> table{};
    for (auto& t : table)
        t = -1;
    for (unsigned b = 0; b < 256; ++b)
        table[byte_char(b)] = static_cast<std::int16_t>(b);
    return table;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

/// Decodes the UTF-8 character at `s[i]`: its code point and length, or length 0 if ill-formed
/// (overlong forms, surrogates and values past U+10FFFF included).
struct utf8_char {
    std::uint32_t cp;
    std::size_t length;
};
inline utf8_char decode_utf8(std::string_view s, std::size_t i) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = byte(0);
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80) return {c, 1};
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1Fu, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, cp = c & 0x0Fu, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07u, min = 0x10000;
    else
        return {0, 0};
    if (s.size() - i < n) return {0, 0};
    for (std::size_t k = 1; k < n; ++k) {
        if ((byte(k) & 0xC0) != 0x80) return {0, 0};
        cp = (cp << 6) | (byte(k) & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
    return {cp, n};
}

/// A piece quoted for an error message: control characters, quotes and bytes that are not UTF-8
/// escaped, long pieces cut.
inline std::string quote_piece(std::string_view text) {
    constexpr std::size_t max_shown = 60;
    std::string out = "\"";
    std::size_t i = 0;
    while (i < text.size() && i < max_shown) {
        const auto c = static_cast<unsigned char>(text[i]);
        const utf8_char u = decode_utf8(text, i);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (u.length > 1) {
            out.append(text.data() + i, u.length);
            i += u.length;
            continue;
        } else if (c >= 0x20 && c < 0x7F) {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("\\x{:02X}", c);
        }
        ++i;
    }
    out += i < text.size() ? "\"..." : "\"";
    return out;
}

/// The byte each code point of the table stands for, -1 for code points outside the table.
inline constexpr std::array<std::int16_t, table_end> byte_of_char = char_bytes();

/// The bytes a piece decodes to: through the byte table if every character is in it, else the
/// piece itself (Hugging Face's ByteLevel decoder does the same).
inline std::string piece_bytes(std::string_view piece) {
    const auto& table = byte_of_char;
    std::string out;
    out.reserve(piece.size());
    for (std::size_t i = 0; i < piece.size();) {
        const utf8_char u = decode_utf8(piece, i);
        if (u.length == 0 || u.cp >= table_end || table[u.cp] < 0) return std::string(piece);
        out += static_cast<char>(static_cast<unsigned char>(table[u.cp]));
        i += u.length;
    }
    return out;
}

struct code_deleter {
    void operator()(pcre2_code_8* code) const noexcept { pcre2_code_free_8(code); }
};
struct match_data_deleter {
    void operator()(pcre2_match_data_8* data) const noexcept { pcre2_match_data_free_8(data); }
};

/// What merging the pair (left, right) gives, and how early.
struct merge_rule {
    std::int32_t rank;
    std::int32_t merged;
};

inline std::uint64_t pair_key(std::int32_t left, std::int32_t right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
}

/// Everything a tokenizer holds; built once, then only read (shared between copies and threads).
struct model {
    std::vector<std::string> pieces;                          // by id, as in the file
    std::vector<std::string> bytes;                           // by id, what decode() gives
    std::unordered_map<std::string_view, std::int32_t> index; // piece -> id (views into `pieces`)
    std::unordered_map<std::uint64_t, merge_rule> merges;     // pair_key(left, right) -> rule
    std::array<std::int32_t, 256> byte_ids{};                 // id of each byte's one-symbol piece
    std::optional<std::int32_t> eos;
    bool add_prefix_space = false;
    bool use_regex = true;
    bool ignore_merges = false;
    std::unique_ptr<pcre2_code_8, code_deleter> regex;
    std::string source;

    model() = default;
    model(const model&) = delete; // `index` points into this object's own `pieces`
    model& operator=(const model&) = delete;

    std::optional<std::int32_t> find(std::string_view piece) const noexcept {
        const auto it = index.find(piece);
        if (it == index.end()) return std::nullopt;
        return it->second;
    }
};

/// A vocabulary entry as read, before the checks; `where` names it in errors.
struct vocab_entry {
    std::string piece;
    std::int64_t id;
    std::string where;
};

/// A merge as read; `where` names it in errors ("line 7", "model.merges[6]").
struct merge_entry {
    std::string_view left, right;
    std::string where;
};

inline std::string_view as_text(const io::mapped_file& file) {
    return {reinterpret_cast<const char*>(file.data()), file.size()};
}

inline nlohmann::json parse_json(std::string_view text, const std::string& source) {
    if (text.empty()) fail(errc::tokenizer_file, "'{}' is empty: expected a JSON object", source);
    try {
        return nlohmann::json::parse(text.data(), text.data() + text.size());
    } catch (const nlohmann::json::exception& e) {
        fail(errc::tokenizer_file, "'{}' is not valid JSON: {}", source, e.what());
    }
}

/// A JSON value that must be an integer id; returns it as int64 (range is checked later). `what`
/// names it in errors.
inline std::int64_t json_id(const nlohmann::json& value, const std::string& source,
                            const std::string& what) {
    if (value.is_number_unsigned()) {
        const auto u = value.get<std::uint64_t>();
        return u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                   ? std::numeric_limits<std::int64_t>::max()
                   : static_cast<std::int64_t>(u);
    }
    if (value.is_number_integer()) return value.get<std::int64_t>();
    fail(errc::tokenizer_file, "'{}': {} has id {}, which is not an integer", source, what,
         value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

/// Reads vocab.json-style {piece: id} into entries.
inline void read_vocab_object(const nlohmann::json& vocab, const std::string& source,
                              const char* field, std::vector<vocab_entry>& out) {
    if (!vocab.is_object())
        fail(errc::tokenizer_file, "'{}': {} must be a JSON object {{piece: id}}, not {}", source,
             field[0] ? field : "the top-level value", vocab.type_name());
    out.reserve(out.size() + vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        std::string where = fmt::format("{}entry {}", field[0] ? std::string(field) + " " : "",
                                        quote_piece(it.key()));
        const std::int64_t id = json_id(it.value(), source, where);
        out.push_back({it.key(), id, std::move(where)});
    }
}

/// Splits "left right" (exactly one space, two non-empty sides).
inline std::optional<std::pair<std::string_view, std::string_view>>
split_merge(std::string_view line) noexcept {
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
        return std::nullopt;
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
}

inline std::vector<merge_entry> read_merges_txt(std::string_view text, const std::string& source) {
    if (text.empty())
        fail(errc::tokenizer_file,
             "'{}' is empty: expected merges, one \"left right\" per line (after an optional "
             "\"#version\" line)",
             source);
    std::vector<merge_entry> merges;
    std::size_t line_number = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        if (line_number == 1 && line.substr(0, 8) == "#version") continue;
        const auto sides = split_merge(line);
        if (!sides)
            fail(errc::tokenizer_file,
                 "'{}': line {} is {}: a merge is two pieces separated by one space", source,
                 line_number, quote_piece(line));
        merges.push_back({sides->first, sides->second, fmt::format("line {}", line_number)});
    }
    return merges;
}

inline std::vector<merge_entry> read_json_merges(const nlohmann::json& merges,
                                                 const std::string& source) {
    if (!merges.is_array())
        fail(errc::tokenizer_file, "'{}': model.merges must be an array, not {}", source,
             merges.type_name());
    std::vector<merge_entry> out;
    out.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
        const nlohmann::json& m = merges[i];
        std::string where = fmt::format("model.merges[{}]", i);
        if (m.is_string()) {
            const auto& s = m.get_ref<const std::string&>();
            const auto sides = split_merge(s);
            if (!sides)
                fail(errc::tokenizer_file,
                     "'{}': {} is {}: a merge is two pieces separated by one space", source, where,
                     quote_piece(s));
            out.push_back({sides->first, sides->second, std::move(where)});
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            out.push_back({m[0].get_ref<const std::string&>(), m[1].get_ref<const std::string&>(),
                           std::move(where)});
        } else {
            fail(errc::tokenizer_file,
                 "'{}': {} is a {}: a merge is a string \"left right\" or an array of two strings",
                 source, where, m.type_name());
        }
    }
    return out;
}

/// Checks the entries (ids 0..N-1, each once) and fills pieces, bytes, the index and byte_ids.
inline void set_vocabulary(model& m, std::vector<vocab_entry>& entries, const std::string& source) {
    const std::size_t n = entries.size();
    if (n > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        fail(errc::tokenizer_file, "'{}' holds {} tokens, more than int32 ids can address", source,
             n);
    constexpr std::size_t unset = std::numeric_limits<std::size_t>::max();
    std::vector<std::size_t> owner(n, unset); // entry index holding each id
    for (std::size_t e = 0; e < n; ++e) {
        const std::int64_t id = entries[e].id;
        if (id < 0 || static_cast<std::uint64_t>(id) >= n)
            fail(errc::tokenizer_file, "'{}': {} has id {}, out of range: {} tokens have ids 0..{}",
                 source, entries[e].where, id, n, n - 1);
        std::size_t& o = owner[static_cast<std::size_t>(id)];
        if (o != unset)
            fail(errc::tokenizer_file, "'{}': {} and {} both have id {}", source, entries[o].where,
                 entries[e].where, id);
        o = e;
    }
    // Every id is owned now (n distinct ids in 0..n-1).
    m.pieces.resize(n);
    m.bytes.resize(n);
    for (std::size_t id = 0; id < n; ++id)
        m.pieces[id] = std::move(entries[owner[id]].piece);
    for (std::size_t id = 0; id < n; ++id) {
        const auto [it, inserted] =
            m.index.emplace(std::string_view(m.pieces[id]), static_cast<std::int32_t>(id));
        if (!inserted)
            fail(errc::tokenizer_file, "'{}': {} and {} are the same piece (ids {} and {})", source,
                 entries[owner[static_cast<std::size_t>(it->second)]].where,
                 entries[owner[id]].where, it->second, id);
        m.bytes[id] = piece_bytes(m.pieces[id]);
    }
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

inline void set_merges(model& m, const std::vector<merge_entry>& merges,
                       const std::string& source) {
    if (merges.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        fail(errc::tokenizer_file, "'{}' holds {} merges, more than int32 ranks can address",
             source, merges.size());
    m.merges.reserve(merges.size());
    std::string joined;
    for (std::size_t r = 0; r < merges.size(); ++r) {
        const merge_entry& e = merges[r];
        const auto left = m.find(e.left);
        const auto right = m.find(e.right);
        if (!left || !right)
            fail(errc::tokenizer_file,
                 "'{}': merge at {} ({} {}) names piece {}, which is not in the vocabulary", source,
                 e.where, quote_piece(e.left), quote_piece(e.right),
                 quote_piece(left ? e.right : e.left));
        joined.assign(e.left).append(e.right);
        const auto merged = m.find(joined);
        if (!merged)
            fail(errc::tokenizer_file,
                 "'{}': merge at {} ({} {}) makes {}, which is not in the vocabulary", source,
                 e.where, quote_piece(e.left), quote_piece(e.right), quote_piece(joined));
        // A pair listed twice keeps its last rank, as in encoder.py's dict and Hugging Face's map.
        m.merges.insert_or_assign(pair_key(*left, *right),
                                  merge_rule{static_cast<std::int32_t>(r), *merged});
    }
}

inline void compile_pattern(model& m) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code_8* re =
        pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pre_token_pattern), PCRE2_ZERO_TERMINATED,
                        PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (!re) {
        PCRE2_UCHAR8 message[256];
        pcre2_get_error_message_8(code, message, sizeof message);
        fail(errc::invalid_argument,
             "PCRE2 cannot compile GPT-2's pre-tokenizer pattern (at offset {}): {}; it needs a "
             "PCRE2 built with Unicode support",
             offset, reinterpret_cast<const char*>(message));
    }
    m.regex.reset(re);
    // JIT is only an acceleration: where it is unavailable (no JIT support, no executable memory)
    // pcre2_match interprets the same pattern with the same results.
    (void)pcre2_jit_compile_8(re, PCRE2_JIT_COMPLETE);
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
    std::unique_ptr<pcre2_match_data_8, match_data_deleter> data(
        pcre2_match_data_create_8(1, nullptr));
    if (!data) throw std::bad_alloc();
    const auto match_valid = [&](std::string_view run, std::size_t base) {
        const auto* subject = reinterpret_cast<PCRE2_SPTR8>(run.data());
        std::size_t pos = 0;
        while (pos < run.size()) {
            const int rc = pcre2_match_8(m.regex.get(), subject, run.size(), pos,
                                         PCRE2_NO_UTF_CHECK, data.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) { // not reached: every character matches some branch
                f(run.substr(pos));
                return;
            }
            if (rc < 0) {
                PCRE2_UCHAR8 message[256];
                pcre2_get_error_message_8(rc, message, sizeof message);
                fail(errc::invalid_argument, "'{}': pre-tokenizing failed at byte {} of {}: {}",
                     m.source, base + pos, text.size(), reinterpret_cast<const char*>(message));
            }
            const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer_8(data.get());
            const std::size_t start = ovector[0], end = ovector[1];
            // No branch matches the empty string, and a match starts at `pos` for the same reason
            // (if one did not, the bytes before it would still be kept as a pre-token).
            ACTLENS_ASSERT(start >= pos && end > start && end <= run.size());
            if (start > pos) f(run.substr(pos, start - pos));
            f(run.substr(start, end - start));
            pos = end;
        }
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = pos;
        while (end < text.size()) {
            const std::size_t length = decode_utf8(text, end).length;
            if (length == 0) break;
            end += length;
        }
        if (end > pos) match_valid(text.substr(pos, end - pos), pos);
        // Each maximal run of bytes that start no valid character is a pre-token of its own.
        pos = end;
        while (end < text.size() && decode_utf8(text, end).length == 0)
            ++end;
        if (end > pos) f(text.substr(pos, end - pos));
        pos = end;
    }
}

/// A candidate merge of node `left` with its successor, as seen when it was queued.
struct candidate {
    std::int32_t rank;
    std::int32_t merged;
    std::int32_t left_id;
    std::int32_t right_id;
    std::size_t left;
};

/// Heap order (std::push_heap keeps the largest on top): lowest rank first, then leftmost.
struct after {
    bool operator()(const candidate& a, const candidate& b) const noexcept {
        if (a.rank != b.rank) return a.rank > b.rank;
        return a.left > b.left;
    }
};

/// Buffers reused across the pre-tokens of one encode() call.
struct merge_scratch {
    std::vector<std::int32_t> symbols;
    std::vector<std::size_t> next, prev;
    std::vector<candidate> heap, pending;
    std::string piece;
};

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
    const std::size_t n = word.size();
    s.symbols.resize(n);
    for (std::size_t i = 0; i < n; ++i)
        s.symbols[i] = m.byte_ids[static_cast<unsigned char>(word[i])];
    if (n == 1) {
        out.push_back(s.symbols[0]);
        return;
    }

    // A doubly linked list over the symbols: a merge rewrites its left node and unlinks the right
    // one, so nodes keep text order and "leftmost" is "smallest index". Stale heap entries are
    // skipped when popped rather than searched for.
    constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
    constexpr std::int32_t gone = -1;
    s.next.resize(n);
    s.prev.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        s.prev[i] = i == 0 ? none : i - 1;
        s.next[i] = i + 1 == n ? none : i + 1;
    }
    s.heap.clear();
    s.pending.clear();
    const auto consider = [&](std::size_t left, std::vector<candidate>& into) {
        if (left == none || s.next[left] == none) return;
        const std::int32_t a = s.symbols[left], b = s.symbols[s.next[left]];
        const auto it = m.merges.find(pair_key(a, b));
        if (it != m.merges.end()) into.push_back({it->second.rank, it->second.merged, a, b, left});
    };
    for (std::size_t i = 0; i + 1 < n; ++i)
        consider(i, s.heap);
    std::make_heap(s.heap.begin(), s.heap.end(), after{});

    while (!s.heap.empty()) {
        // One round of encoder.py: every occurrence of the best pair, left to right. Pairs formed
        // meanwhile wait in `pending` until the round is over, even if they rank better.
        const std::int32_t rank = s.heap.front().rank;
        while (!s.heap.empty() && s.heap.front().rank == rank) {
            std::pop_heap(s.heap.begin(), s.heap.end(), after{});
            const candidate c = s.heap.back();
            s.heap.pop_back();
            const std::size_t left = c.left, right = s.next[left];
            // A node only changes by merging, which changes its id, so equal ids mean this pair is
            // still the current one.
            if (s.symbols[left] != c.left_id || right == none || s.symbols[right] != c.right_id)
                continue;
            s.symbols[left] = c.merged;
            s.symbols[right] = gone;
            s.next[left] = s.next[right];
            if (s.next[right] != none) s.prev[s.next[right]] = left;
            consider(s.prev[left], s.pending);
            consider(left, s.pending);
        }
        for (const candidate& c : s.pending) {
            s.heap.push_back(c);
            std::push_heap(s.heap.begin(), s.heap.end(), after{});
        }
        s.pending.clear();
    }
    for (std::size_t i = 0; i != none; i = s.next[i])
        out.push_back(s.symbols[i]);
}

inline std::shared_ptr<model> finish(std::shared_ptr<model> m) {
    compile_pattern(*m);
    return m;
}

/// Reads an optional string field of a settings object ("" when absent or null).
inline std::string optional_string(const nlohmann::json& object, const char* key,
                                   const std::string& source, const std::string& path) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return {};
    if (!it->is_string())
        fail(errc::tokenizer_file, "'{}': {}.{} must be a string, not {}", source, path, key,
             it->type_name());
    return it->get<std::string>();
}

/// Reads an optional boolean field of a settings object.
inline bool optional_bool(const nlohmann::json& object, const char* key, bool fallback,
                          const std::string& source, const std::string& path) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_boolean())
        fail(errc::tokenizer_file, "'{}': {}.{} must be true or false, not {}", source, path, key,
             it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return it->get<bool>();
}

/// The "type" of an optional component (normalizer, pre_tokenizer, decoder): "" when null/absent.
inline std::string component_type(const nlohmann::json& root, const char* key,
                                  const std::string& source) {
    const auto it = root.find(key);
    if (it == root.end() || it->is_null()) return {};
    if (!it->is_object())
        fail(errc::tokenizer_file, "'{}': {} must be an object or null, not {}", source, key,
             it->type_name());
    const std::string type = optional_string(*it, "type", source, key);
    if (type.empty()) fail(errc::tokenizer_file, "'{}': {} has no \"type\"", source, key);
    return type;
}

} // namespace detail::bpe

inline bpe_tokenizer bpe_tokenizer::load(const std::string& vocab_json_path,
                                         const std::string& merges_txt_path) {
    const io::mapped_file vocab(vocab_json_path);
    const io::mapped_file merges(merges_txt_path);
    return from_vocab_merges(detail::bpe::as_text(vocab), detail::bpe::as_text(merges),
                             vocab_json_path, merges_txt_path);
}

inline bpe_tokenizer bpe_tokenizer::load_tokenizer_json(const std::string& path) {
    const io::mapped_file file(path);
    return from_tokenizer_json(detail::bpe::as_text(file), path);
}

inline bpe_tokenizer bpe_tokenizer::from_vocab_merges(std::string_view vocab_json,
                                                      std::string_view merges_txt,
                                                      const std::string& vocab_source,
                                                      const std::string& merges_source) {
    namespace d = detail::bpe;
    auto m = std::make_shared<d::model>();
    m->source = vocab_source;
    std::vector<d::vocab_entry> entries;
    {
        const nlohmann::json vocab = d::parse_json(vocab_json, vocab_source);
        d::read_vocab_object(vocab, vocab_source, "", entries);
    }
    d::set_vocabulary(*m, entries, vocab_source);
    d::set_merges(*m, d::read_merges_txt(merges_txt, merges_source), merges_source);
    return bpe_tokenizer(d::finish(std::move(m)));
}

inline bpe_tokenizer bpe_tokenizer::from_tokenizer_json(std::string_view json,
                                                        const std::string& source) {
    namespace d = detail::bpe;
    const nlohmann::json root = d::parse_json(json, source);
    if (!root.is_object())
        fail(errc::tokenizer_file, "'{}' must hold a JSON object, not {}", source,
             root.type_name());
    const auto model_it = root.find("model");
    if (model_it == root.end() || !model_it->is_object())
        fail(errc::tokenizer_file, "'{}' has no \"model\" object", source);
    const nlohmann::json& model = *model_it;

    const std::string type = d::optional_string(model, "type", source, "model");
    if (!type.empty() && type != "BPE")
        fail(errc::tokenizer_file, "'{}': model.type is \"{}\"; only \"BPE\" is supported", source,
             type);
    if (const auto it = model.find("dropout");
        it != model.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0.0))
        fail(errc::tokenizer_file, "'{}': model.dropout is {}; only null or 0 is supported", source,
             it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
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
    const nlohmann::json& pre_tokenizer = *root.find("pre_tokenizer");
    m->add_prefix_space =
        d::optional_bool(pre_tokenizer, "add_prefix_space", false, source, "pre_tokenizer");
    m->use_regex = d::optional_bool(pre_tokenizer, "use_regex", true, source, "pre_tokenizer");
    m->ignore_merges = d::optional_bool(model, "ignore_merges", false, source, "model");

    std::vector<d::vocab_entry> entries;
    const auto vocab_it = model.find("vocab");
    if (vocab_it == model.end()) fail(errc::tokenizer_file, "'{}' has no model.vocab", source);
    d::read_vocab_object(*vocab_it, source, "model.vocab", entries);

    // Added tokens already in model.vocab (GPT-2's <|endoftext|>) must agree with it; the others
    // extend the vocabulary.
    if (const auto added = root.find("added_tokens"); added != root.end() && !added->is_null()) {
        if (!added->is_array())
            fail(errc::tokenizer_file, "'{}': added_tokens must be an array, not {}", source,
                 added->type_name());
        std::unordered_map<std::string_view, std::int64_t> in_vocab;
        for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it)
            in_vocab.emplace(it.key(), d::json_id(it.value(), source, "model.vocab"));
        for (std::size_t i = 0; i < added->size(); ++i) {
            const nlohmann::json& t = (*added)[i];
            const std::string where = fmt::format("added_tokens[{}]", i);
            if (!t.is_object() || !t.contains("content") || !t["content"].is_string() ||
                !t.contains("id"))
                fail(errc::tokenizer_file,
                     "'{}': {} must be an object with a string \"content\" and an integer \"id\"",
                     source, where);
            const auto& content = t["content"].get_ref<const std::string&>();
            const std::int64_t id = d::json_id(t["id"], source, where);
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
    if (merges_it == model.end()) fail(errc::tokenizer_file, "'{}' has no model.merges", source);
    d::set_merges(*m, d::read_json_merges(*merges_it, source), source);
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

inline bpe_tokenizer load_bpe_tokenizer(const std::string& path) {
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

} // namespace actlens
