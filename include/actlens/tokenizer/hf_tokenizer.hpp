// actlens/tokenizer/hf_tokenizer.hpp: a Hugging Face `tokenizer.json` whose model is BPE (Llama 3,
// Qwen 2/3, Llama 2, Mistral, Gemma 3, GPT-2, ...), encoded and decoded as the `tokenizers` library
// does. The pipeline (README "Tokenizers"):
//
// 1. Added tokens. `added_tokens` whose "normalized" is false are found in the raw text first,
//    leftmost-longest (with their lstrip / rstrip / single_word options); the text between them
//    goes on alone. Special ones (`"special": true`, such as <|endoftext|> or <s>) are matched only
//    when the caller asks (encode_options::parse_special_tokens, what Hugging Face does by
//    default); otherwise "<s>" in a prompt is ordinary text. Non-special added tokens always match.
// 2. Normalizer: NFC, NFD, NFKC, NFKD (utf8proc, Unicode 15), Lowercase (simple case mapping per
//    code point), StripAccents, Prepend (when the text is not empty), Replace (a string or a
//    regular expression), Strip, and Sequence of these. Added tokens with "normalized": true are
//    then found in the normalized text.
// 3. Pre-tokenizer: ByteLevel (GPT-2's pattern if use_regex, add_prefix_space, bytes mapped to
//    GPT-2's byte-to-unicode table), Split (a string or a regular expression; behavior Removed,
//    Isolated, MergedWithPrevious, MergedWithNext or Contiguous; invert), Metaspace (replacement,
//    prepend_scheme always / first / never, split), Digits (individual_digits), Punctuation,
//    Whitespace, WhitespaceSplit, and Sequence of these.
// 4. Model: BPE with merges applied best first (lowest rank, then leftmost, as Hugging Face does),
//    ignore_merges, byte_fallback (a character outside the vocabulary becomes its <0xXX> tokens),
//    unk_token and fuse_unk, continuing_subword_prefix and end_of_word_suffix. dropout must be
//    null or 0 (encoding is deterministic).
// 5. Post-processor (only with add_special_tokens): TemplateProcessing (its `single` template),
//    BertProcessing, RobertaProcessing, ByteLevel (nothing to add) and Sequence of these: ids
//    before and after the text, such as Llama 2's <s>.
// Decoder: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip and Sequence of these; no
// decoder joins the pieces with spaces, as Hugging Face does. decode() returns bytes: where Hugging
// Face would turn an ill-formed UTF-8 sequence (an id that is half a character) into U+FFFD, the
// bytes are kept, so that decoding ids one by one and concatenating gives the text back.
//
// Regular expressions (Split, Replace) run with PCRE2 (UTF + UCP) with \s and \S meaning the
// White_Space property, as in Rust's `onig` that Hugging Face uses. The text must be valid UTF-8
// (Hugging Face takes Rust strings): anything else is actlens::error arg.101 naming the byte.
//
// Errors while loading: tokenizer.301 naming the file and the field (e.g. `pre_tokenizer.
// pretokenizers[1].type`) for an unknown or unsupported component type, a regular expression that
// does not compile, a malformed value, an id out of range or used twice, a merge naming a piece
// outside the vocabulary; io.201 when the file cannot be opened. JSON nesting is bounded
// (io/json.hpp) and values from the file are quoted in messages only in bounded excerpts.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/json.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/tokenizer/detail/bpe_core.hpp>

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace actlens {

namespace detail::hf {
struct model;
} // namespace detail::hf

/// How hf_tokenizer::encode treats special tokens.
struct encode_options {
    /// Add the post-processor's tokens around the text (Llama 2's and Gemma's BOS); Hugging Face's
    /// `add_special_tokens`.
    bool add_special_tokens = false;
    /// Encode special added tokens written in the text ("<|im_start|>", "<s>") as their ids rather
    /// than as ordinary characters. Hugging Face does by default (split_special_tokens = false).
    bool parse_special_tokens = false;
};

/// A tokenizer.json with a BPE model (see the top of this header for what is supported).
///
/// Immutable after loading: every method is `const` and safe to call concurrently. Copies are cheap
/// and share the loaded vocabulary.
class hf_tokenizer {
public:
    hf_tokenizer(const hf_tokenizer&) = default;
    hf_tokenizer& operator=(const hf_tokenizer&) = default;
    /// Moving shares like copying, so that a moved-from tokenizer stays usable.
    hf_tokenizer(hf_tokenizer&& other) noexcept : m_model(other.m_model) {}
    hf_tokenizer& operator=(hf_tokenizer&& other) noexcept {
        m_model = other.m_model;
        return *this;
    }

    /// Loads a tokenizer.json. Throws actlens::error io.201 if it cannot be opened and
    /// tokenizer.301 as the top of this header says. O(V + M) for V tokens and M merges.
    template <class Deferred = void>
    static hf_tokenizer load(const std::string& path);

    /// Builds a tokenizer from the contents of a tokenizer.json; `source` names it in errors.
    template <class Deferred = void>
    static hf_tokenizer from_json(std::string_view json, const std::string& source = "<tokenizer.json>");

    /// Builds a tokenizer from a parsed tokenizer.json document (or one assembled in memory, as
    /// gguf_vocab.hpp does for GGUF files); `source` names it in errors.
    template <class Deferred = void>
    static hf_tokenizer from_document(const io::json_value& document, const std::string& source);

    /// Token ids of `text` (valid UTF-8), with the post-processor's special tokens if
    /// `add_special_tokens`; special tokens written in the text are ordinary characters.
    std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = false) const {
        return encode(text, encode_options{add_special_tokens, false});
    }

    /// Token ids of `text` (valid UTF-8) with the given options. Throws actlens::error arg.101
    /// naming the byte if `text` is not valid UTF-8.
    std::vector<std::int32_t> encode(std::string_view text, const encode_options& options) const;

    /// The text of `ids` through the decoder; special tokens are left out if `skip_special_tokens`.
    /// Throws actlens::error tokenizer.302 naming the position and the id if one is out of range.
    std::string decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens = false) const;

    /// `text` (valid UTF-8) through the normalizer alone.
    std::string normalize(std::string_view text) const;

    /// The pre-tokens the model merges for `text` (normalizer and pre-tokenizer applied, no added
    /// tokens matched), in the pre-tokenizer's alphabet (byte-level: "Ġworld").
    std::vector<std::string> pre_tokenize(std::string_view text) const;

    /// Number of ids (model vocabulary and added tokens).
    std::size_t vocab_size() const noexcept;

    /// The piece of `id` as written in the file. Throws tokenizer.302 when out of range.
    const std::string& piece(std::int32_t id) const;

    /// The id of the piece written exactly `piece`, if any.
    std::optional<std::int32_t> find_piece(std::string_view piece) const noexcept;

    /// Whether `id` is a special added token (false when out of range).
    bool is_special(std::int32_t id) const noexcept;

    /// The beginning-of-sequence id: the first id the post-processor adds, else a special token
    /// named <s>, <bos> or <|begin_of_text|>.
    std::optional<std::int32_t> bos_id() const noexcept;

    /// The end-of-sequence id: a special token named </s>, <eos>, <|end_of_text|> or
    /// <|endoftext|>, in that order of preference (tokenizer.json does not say which).
    std::optional<std::int32_t> eos_id() const noexcept;

    /// The file the tokenizer came from, as used in error messages.
    const std::string& source() const noexcept;

private:
    explicit hf_tokenizer(std::shared_ptr<const detail::hf::model> model) : m_model(std::move(model)) {}

    std::shared_ptr<const detail::hf::model> m_model;
};

/// Loads `path`: a tokenizer.json file under any name, or a directory holding tokenizer.json.
/// Throws actlens::error io.201 if there is neither, and the errors of hf_tokenizer::load.
template <class Deferred = void>
hf_tokenizer load_hf_tokenizer(const std::string& path);

// ------------------------------------------------------------------------------------------------
// Implementation
// ------------------------------------------------------------------------------------------------
// The loaders and everything that reads JSON are templates of nothing (`template <class Deferred =
// void>`): the JSON code is then compiled in the files that load a tokenizer, not in every file that
// includes this header (README "Compile time").

namespace detail::hf {

using io::detail::json_excerpt;
using span = std::pair<std::size_t, std::size_t>; // [start, end) in bytes

/// The White_Space property (Unicode PropList.txt, stable since Unicode 6.3): Rust's
/// char::is_whitespace, which Hugging Face's Strip and WhitespaceSplit use.
constexpr bool is_white_space(std::uint32_t c) noexcept {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

inline utf8proc_category_t category(std::uint32_t c) noexcept {
    return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

/// Rust's char::is_numeric (Hugging Face's Digits): general category Nd, Nl or No.
inline bool is_numeric(std::uint32_t c) noexcept {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/// Hugging Face's Punctuation: ASCII punctuation (symbols such as $ + < included) or a P* category.
inline bool is_punctuation(std::uint32_t c) noexcept {
    if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                         (c >= 0x7B && c <= 0x7E);
    const auto k = category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

inline bool is_mark(std::uint32_t c) noexcept {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

/// Letters, numbers and '_': what single_word added tokens must not touch.
inline bool is_word_char(std::uint32_t c) noexcept {
    const auto k = category(c);
    return c == '_' || (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/// Throws arg.101 naming the first byte of `text` that starts no valid UTF-8 character.
inline void require_utf8(std::string_view text, const std::string& source) {
    for (std::size_t i = 0; i < text.size();) {
        const std::size_t n = bpe::decode_utf8(text, i).length;
        if (n == 0)
            fail(errc::invalid_argument,
                 "'{}': the text is not valid UTF-8 at byte {} (0x{:02X}); a tokenizer.json tokenizer encodes "
                 "Unicode text",
                 source, i, static_cast<unsigned char>(text[i]));
        i += n;
    }
}

/// Calls f(code point, start, length) for each character of valid UTF-8 `text`.
template <class F>
void for_each_char(std::string_view text, F&& f) {
    for (std::size_t i = 0; i < text.size();) {
        const bpe::utf8_char u = bpe::decode_utf8(text, i);
        f(u.cp, i, u.length);
        i += u.length;
    }
}

/// A "pattern" of tokenizer.json: {"String": literal} or {"Regex": expression}.
struct pattern {
    std::string literal;
    bpe::regex re; // null for a literal
};

template <class Deferred = void>
pattern read_pattern(const io::json_value& object, const std::string& source, const std::string& where) {
    const auto it = object.find("pattern");
    if (!it || !it->is_object() || it->size() != 1)
        fail(errc::tokenizer_file, "'{}': {}.pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}, not {}",
             source, where, !it ? std::string("missing") : json_excerpt(*it));
    const std::string& key = it->key(0);
    const io::json_value& value = (*it)[0];
    if (!value.is_string() || (key != "String" && key != "Regex"))
        fail(errc::tokenizer_file, "'{}': {}.pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}, not {}",
             source, where, json_excerpt(*it));
    pattern p;
    p.literal = value.as_string();
    if (key == "Regex")
        p.re = bpe::compile_regex(p.literal, errc::tokenizer_file,
                                  fmt::format("'{}': {}.pattern.Regex", source, where));
    return p;
}

/// The matches of `p` in `text`, left to right, non-overlapping, non-empty.
inline std::vector<span> find_matches(const pattern& p, std::string_view text, const std::string& source) {
    std::vector<span> out;
    if (p.re) {
        bpe::for_each_match(p.re, text, source, [&](std::size_t a, std::size_t b) { out.emplace_back(a, b); });
    } else if (!p.literal.empty()) {
        for (std::size_t at = text.find(p.literal); at != std::string_view::npos;
             at = text.find(p.literal, at + p.literal.size()))
            out.emplace_back(at, at + p.literal.size());
    }
    return out;
}

/// `text` with every match of `p` replaced by `content`.
inline std::string replace_all(const pattern& p, std::string_view text, std::string_view content,
                               const std::string& source) {
    std::string out;
    std::size_t pos = 0;
    for (const auto& [a, b] : find_matches(p, text, source)) {
        out.append(text.substr(pos, a - pos)).append(content);
        pos = b;
    }
    return out.append(text.substr(pos));
}

/// Hugging Face's SplitDelimiterBehavior: what happens to the matches (the delimiters).
enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

template <class Deferred = void>
split_behavior read_behavior(const io::json_value& object, const std::string& source, const std::string& where,
                             split_behavior fallback) {
    const std::string b = bpe::optional_string(object, "behavior", source, where);
    if (b.empty()) return fallback;
    const std::pair<const char*, split_behavior> names[] = {{"Removed", split_behavior::removed},
                                                            {"Isolated", split_behavior::isolated},
                                                            {"MergedWithPrevious", split_behavior::merged_with_previous},
                                                            {"MergedWithNext", split_behavior::merged_with_next},
                                                            {"Contiguous", split_behavior::contiguous}};
    for (const auto& [name, value] : names)
        if (b == name) return value;
    fail(errc::tokenizer_file,
         "'{}': {}.behavior is {}; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous",
         source, where, bpe::quote_piece(b));
}

/// Cuts `text` at `matches` (sorted, disjoint) as Hugging Face's NormalizedString::split does:
/// matches and the text between them become pieces marked as delimiters or not (flipped by
/// `invert`), `behavior` decides where delimiters go, and empty pieces are dropped.
inline std::vector<span> split_spans(std::size_t length, const std::vector<span>& matches, split_behavior behavior,
                                     bool invert) {
    std::vector<std::pair<span, bool>> pieces; // (span, is delimiter)
    std::size_t pos = 0;
    for (const auto& [a, b] : matches) {
        if (a > pos) pieces.push_back({{pos, a}, invert});
        pieces.push_back({{a, b}, !invert});
        pos = b;
    }
    if (pos < length) pieces.push_back({{pos, length}, invert});

    std::vector<span> out;
    bool previous_match = false;
    switch (behavior) {
    case split_behavior::removed:
        for (const auto& [s, is_match] : pieces)
            if (!is_match) out.push_back(s);
        break;
    case split_behavior::isolated:
        for (const auto& piece : pieces)
            out.push_back(piece.first);
        break;
    case split_behavior::merged_with_previous:
        for (const auto& [s, is_match] : pieces) {
            if (is_match && !previous_match && !out.empty())
                out.back().second = s.second;
            else
                out.push_back(s);
            previous_match = is_match;
        }
        break;
    case split_behavior::merged_with_next:
        for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
            if (it->second && !previous_match && !out.empty())
                out.back().first = it->first.first;
            else
                out.push_back(it->first);
            previous_match = it->second;
        }
        std::reverse(out.begin(), out.end());
        break;
    case split_behavior::contiguous:
        for (const auto& [s, is_match] : pieces) {
            if (is_match == previous_match && !out.empty())
                out.back().second = s.second;
            else
                out.push_back(s);
            previous_match = is_match;
        }
        break;
    }
    return out;
}

/// Every character of `text` for which `test` holds, each a match of its own.
template <class Test>
std::vector<span> char_matches(std::string_view text, Test&& test) {
    std::vector<span> out;
    for_each_char(text, [&](std::uint32_t cp, std::size_t at, std::size_t n) {
        if (test(cp)) out.emplace_back(at, at + n);
    });
    return out;
}

// ---- normalizers --------------------------------------------------------------------------------

enum class normalizer_kind { nfc, nfd, nfkc, nfkd, lowercase, strip_accents, prepend, replace, strip };

struct normalizer_step {
    normalizer_kind kind;
    pattern what;        // replace
    std::string content; // prepend, replace
    bool left = false, right = false; // strip
};

/// Unicode normalisation by utf8proc (see README "Tokenizers" for why utf8proc).
inline std::string unicode_normalize(std::string_view text, utf8proc_option_t form, const std::string& source) {
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                     &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | form));
    if (n < 0) fail(errc::invalid_argument, "'{}': utf8proc cannot normalize the text: {}", source, utf8proc_errmsg(n));
    std::string result(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
    std::free(out);
    return result;
}

inline std::string apply(const normalizer_step& step, std::string text, const std::string& source) {
    switch (step.kind) {
    case normalizer_kind::nfc:
        return unicode_normalize(text, UTF8PROC_COMPOSE, source);
    case normalizer_kind::nfd:
        return unicode_normalize(text, UTF8PROC_DECOMPOSE, source);
    case normalizer_kind::nfkc:
        return unicode_normalize(text, static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_COMPAT), source);
    case normalizer_kind::nfkd:
        return unicode_normalize(text, static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT), source);
    case normalizer_kind::lowercase:
    case normalizer_kind::strip_accents: {
        std::string out;
        out.reserve(text.size());
        for_each_char(text, [&](std::uint32_t cp, std::size_t, std::size_t) {
            if (step.kind == normalizer_kind::strip_accents) {
                if (!is_mark(cp)) bpe::append_utf8(out, cp);
            } else {
                bpe::append_utf8(out, static_cast<std::uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
            }
        });
        return out;
    }
    case normalizer_kind::prepend:
        return text.empty() ? text : step.content + text;
    case normalizer_kind::replace:
        return replace_all(step.what, text, step.content, source);
    case normalizer_kind::strip: {
        std::size_t begin = 0, end = text.size();
        if (step.left)
            while (begin < end) {
                const bpe::utf8_char u = bpe::decode_utf8(text, begin);
                if (!is_white_space(u.cp)) break;
                begin += u.length;
            }
        if (step.right)
            while (end > begin) {
                std::size_t start = end - 1;
                while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
                    --start;
                if (!is_white_space(bpe::decode_utf8(text, start).cp)) break;
                end = start;
            }
        return text.substr(begin, end - begin);
    }
    }
    return text;
}

// ---- pre-tokenizers -----------------------------------------------------------------------------

enum class pre_tokenizer_kind { byte_level, split, metaspace, digits, punctuation, whitespace, whitespace_split };
enum class prepend_scheme { always, first, never };

struct pre_tokenizer_step {
    pre_tokenizer_kind kind;
    pattern what;                                    // split
    split_behavior behavior = split_behavior::isolated; // split, punctuation
    bool invert = false;                             // split
    bool add_prefix_space = false, use_regex = true; // byte_level
    std::string replacement;                         // metaspace
    prepend_scheme prepend = prepend_scheme::always; // metaspace
    bool split = true;                               // metaspace
    bool individual_digits = false;                  // digits
};

/// A piece of text on its way through the pre-tokenizer. `at_start`: it begins at byte 0 of the
/// caller's text (Metaspace's prepend_scheme "first").
struct pre_token {
    std::string text;
    bool at_start;
};

// ---- decoders -----------------------------------------------------------------------------------

enum class decoder_kind { byte_level, metaspace, replace, byte_fallback, fuse, strip };

struct decoder_step {
    decoder_kind kind;
    pattern what;                                    // replace
    std::string content;                             // replace, strip (one character)
    std::string replacement;                         // metaspace
    prepend_scheme prepend = prepend_scheme::always; // metaspace
    std::size_t start = 0, stop = 0;                 // strip
};

// ---- added tokens -------------------------------------------------------------------------------

struct added_token {
    std::string content;
    std::int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
};

/// A byte trie over added-token contents, for leftmost-longest matching.
struct token_trie {
    std::unordered_map<std::uint64_t, std::uint32_t> edges; // (node << 8 | byte) -> node
    std::vector<std::int32_t> token{-1};                    // by node: index into model::added, or -1

    void insert(std::string_view text, std::int32_t index) {
        std::uint32_t node = 0;
        for (const char c : text) {
            const std::uint64_t key = (static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(c);
            const auto [it, inserted] = edges.emplace(key, static_cast<std::uint32_t>(token.size()));
            if (inserted) token.push_back(-1);
            node = it->second;
        }
        token[node] = index;
    }
    bool empty() const noexcept { return token.size() == 1; }
};

// ---- the model ----------------------------------------------------------------------------------

struct model : bpe::vocabulary {
    std::string source;
    std::vector<normalizer_step> normalizers;
    std::vector<pre_tokenizer_step> pre_tokenizers;
    std::vector<decoder_step> decoders;
    bool has_decoder = false;
    bpe::regex byte_level_pattern; // GPT-2's, for ByteLevel pre-tokenizers with use_regex

    bpe::merge_table merges;
    std::optional<std::int32_t> unk;
    bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
    std::string continuing_prefix, end_suffix;
    std::array<std::int32_t, 256> byte_tokens{}; // id of "<0xXX>", -1 if absent

    std::vector<added_token> added;
    token_trie raw_tokens, normalized_tokens;
    std::vector<bool> special; // by id
    std::vector<std::int32_t> prefix, suffix;
};

/// Calls on_text(section, offset) and on_token(id) in text order: the matches in `text` of the added
/// tokens in `trie` (special ones only if `parse_special`), and the text between them.
template <class OnText, class OnToken>
void split_added(const model& m, const token_trie& trie, std::string_view text, bool parse_special, OnText&& on_text,
                 OnToken&& on_token) {
    if (trie.empty()) {
        if (!text.empty()) on_text(text, std::size_t{0});
        return;
    }
    const auto char_before = [&](std::size_t at) {
        std::size_t s = at - 1;
        while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80)
            --s;
        return bpe::decode_utf8(text, s);
    };
    std::size_t done = 0; // text before `done` is passed on
    for (std::size_t i = 0; i < text.size();) {
        // The longest allowed token starting at i.
        std::uint32_t node = 0;
        std::int32_t best = -1;
        std::size_t best_end = i;
        for (std::size_t j = i; j < text.size(); ++j) {
            const auto it =
                trie.edges.find((static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(text[j]));
            if (it == trie.edges.end()) break;
            node = it->second;
            const std::int32_t t = trie.token[node];
            if (t >= 0 && (parse_special || !m.added[static_cast<std::size_t>(t)].special)) best = t, best_end = j + 1;
        }
        if (best >= 0) {
            const added_token& a = m.added[static_cast<std::size_t>(best)];
            if (a.single_word && ((i > 0 && is_word_char(char_before(i).cp)) ||
                                  (best_end < text.size() && is_word_char(bpe::decode_utf8(text, best_end).cp))))
                best = -1;
        }
        if (best < 0) {
            const std::size_t n = bpe::decode_utf8(text, i).length;
            i += n == 0 ? 1 : n;
            continue;
        }
        const added_token& a = m.added[static_cast<std::size_t>(best)];
        std::size_t start = i, end = best_end;
        if (a.lstrip)
            while (start > done) {
                const bpe::utf8_char u = char_before(start);
                if (!is_white_space(u.cp)) break;
                start -= u.length;
            }
        if (a.rstrip)
            while (end < text.size()) {
                const bpe::utf8_char u = bpe::decode_utf8(text, end);
                if (!is_white_space(u.cp)) break;
                end += u.length;
            }
        if (start > done) on_text(text.substr(done, start - done), done);
        on_token(a.id);
        done = i = end;
    }
    if (done < text.size()) on_text(text.substr(done), done);
}

inline std::string normalize(const model& m, std::string text) {
    for (const normalizer_step& step : m.normalizers)
        text = apply(step, std::move(text), m.source);
    return text;
}

/// Applies one pre-tokenizer to every piece.
inline void apply(const model& m, const pre_tokenizer_step& step, std::vector<pre_token>& pieces) {
    std::vector<pre_token> out;
    out.reserve(pieces.size());
    const auto emit = [&](const pre_token& from, const std::vector<span>& spans) {
        for (std::size_t k = 0; k < spans.size(); ++k)
            out.push_back({from.text.substr(spans[k].first, spans[k].second - spans[k].first),
                           from.at_start && spans[k].first == 0});
    };
    for (pre_token& p : pieces) {
        switch (step.kind) {
        case pre_tokenizer_kind::byte_level: {
            if (step.add_prefix_space && (p.text.empty() || p.text.front() != ' ')) p.text.insert(0, 1, ' ');
            std::vector<span> spans{{0, p.text.size()}};
            if (step.use_regex)
                spans = split_spans(p.text.size(), find_matches({{}, m.byte_level_pattern}, p.text, m.source),
                                    split_behavior::isolated, false);
            for (const auto& [a, b] : spans) {
                std::string mapped;
                for (std::size_t k = a; k < b; ++k)
                    bpe::append_utf8(mapped, bpe::char_of_byte[static_cast<unsigned char>(p.text[k])]);
                out.push_back({std::move(mapped), p.at_start && a == 0});
            }
            break;
        }
        case pre_tokenizer_kind::split:
            emit(p, split_spans(p.text.size(), find_matches(step.what, p.text, m.source), step.behavior, step.invert));
            break;
        case pre_tokenizer_kind::metaspace: {
            std::string text = replace_all({" ", nullptr}, p.text, step.replacement, m.source);
            const bool starts = text.compare(0, step.replacement.size(), step.replacement) == 0;
            if (!starts && (step.prepend == prepend_scheme::always ||
                            (step.prepend == prepend_scheme::first && p.at_start)))
                text.insert(0, step.replacement);
            const pre_token replaced{std::move(text), p.at_start};
            if (step.split)
                emit(replaced, split_spans(replaced.text.size(),
                                           find_matches({step.replacement, nullptr}, replaced.text, m.source),
                                           split_behavior::merged_with_next, false));
            else
                out.push_back(replaced);
            break;
        }
        case pre_tokenizer_kind::digits:
            emit(p, split_spans(p.text.size(), char_matches(p.text, is_numeric),
                                step.individual_digits ? split_behavior::isolated : split_behavior::contiguous, false));
            break;
        case pre_tokenizer_kind::punctuation:
            emit(p, split_spans(p.text.size(), char_matches(p.text, is_punctuation), step.behavior, false));
            break;
        case pre_tokenizer_kind::whitespace:
            emit(p, split_spans(p.text.size(), find_matches(step.what, p.text, m.source), split_behavior::removed, true));
            break;
        case pre_tokenizer_kind::whitespace_split:
            emit(p, split_spans(p.text.size(), char_matches(p.text, is_white_space), split_behavior::removed, false));
            break;
        }
    }
    pieces = std::move(out);
}

/// Appends the ids of one pre-token (a "word") to `out`.
inline void encode_word(const model& m, std::string_view word, bpe::merge_scratch& s, std::vector<std::int32_t>& out) {
    if (word.empty()) return;
    if (m.ignore_merges)
        if (const auto id = m.find(word)) {
            out.push_back(*id);
            return;
        }
    s.symbols.clear();
    bool previous_unknown = false;
    for_each_char(word, [&](std::uint32_t, std::size_t at, std::size_t n) {
        s.piece.clear();
        if (at > 0) s.piece += m.continuing_prefix;
        s.piece.append(word.substr(at, n));
        if (at + n == word.size()) s.piece += m.end_suffix;
        if (const auto id = m.find(s.piece)) {
            s.symbols.push_back(*id);
            previous_unknown = false;
            return;
        }
        if (m.byte_fallback) {
            bool all = true;
            for (std::size_t k = at; k < at + n; ++k)
                all = all && m.byte_tokens[static_cast<unsigned char>(word[k])] >= 0;
            if (all) {
                for (std::size_t k = at; k < at + n; ++k)
                    s.symbols.push_back(m.byte_tokens[static_cast<unsigned char>(word[k])]);
                previous_unknown = false;
                return;
            }
        }
        // Hugging Face drops a character it has no token for when there is no unk_token.
        if (m.unk && !(m.fuse_unk && previous_unknown)) s.symbols.push_back(*m.unk);
        previous_unknown = m.unk.has_value();
    });
    bpe::merge_symbols(m.merges, bpe::merge_order::best_first, s, out);
}

/// Normalizes, pre-tokenizes and merges one section of text between raw added tokens.
inline void encode_section(const model& m, std::string_view section, bool at_start, bool parse_special,
                           bpe::merge_scratch& scratch, std::vector<std::int32_t>& ids) {
    const std::string normalized = normalize(m, std::string(section));
    split_added(
        m, m.normalized_tokens, normalized, parse_special,
        [&](std::string_view text, std::size_t offset) {
            std::vector<pre_token> pieces{{std::string(text), at_start && offset == 0}};
            for (const pre_tokenizer_step& step : m.pre_tokenizers)
                apply(m, step, pieces);
            for (const pre_token& p : pieces)
                encode_word(m, p.text, scratch, ids);
        },
        [&](std::int32_t id) { ids.push_back(id); });
}

/// The byte "<0xXX>" stands for, if `token` is one.
inline std::optional<unsigned char> fallback_byte(std::string_view token) {
    if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return std::nullopt;
    unsigned value = 0;
    for (const char c : token.substr(3, 2)) {
        value <<= 4;
        if (c >= '0' && c <= '9')
            value |= static_cast<unsigned>(c - '0');
        else if (c >= 'A' && c <= 'F')
            value |= static_cast<unsigned>(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            value |= static_cast<unsigned>(c - 'a' + 10);
        else
            return std::nullopt;
    }
    return static_cast<unsigned char>(value);
}

/// Applies one decoder to the token strings.
inline void apply(const model& m, const decoder_step& step, std::vector<std::string>& tokens) {
    switch (step.kind) {
    case decoder_kind::byte_level:
        for (std::string& t : tokens)
            t = bpe::piece_bytes(t);
        break;
    case decoder_kind::metaspace:
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            tokens[i] = replace_all({step.replacement, nullptr}, tokens[i], " ", m.source);
            if (i == 0 && step.prepend != prepend_scheme::never && !tokens[i].empty() && tokens[i].front() == ' ')
                tokens[i].erase(0, 1);
        }
        break;
    case decoder_kind::replace:
        for (std::string& t : tokens)
            t = replace_all(step.what, t, step.content, m.source);
        break;
    case decoder_kind::byte_fallback: {
        std::vector<std::string> out;
        bool in_bytes = false;
        for (std::string& t : tokens) {
            const auto byte = fallback_byte(t);
            if (byte && in_bytes) {
                out.back() += static_cast<char>(*byte);
            } else if (byte) {
                out.emplace_back(1, static_cast<char>(*byte));
            } else {
                out.push_back(std::move(t));
            }
            in_bytes = byte.has_value();
        }
        tokens = std::move(out);
        break;
    }
    case decoder_kind::fuse: {
        std::string all;
        for (const std::string& t : tokens)
            all += t;
        tokens.assign(1, std::move(all));
        break;
    }
    case decoder_kind::strip:
        for (std::string& t : tokens) {
            std::size_t begin = 0, end = t.size();
            const std::size_t c = step.content.size();
            for (std::size_t k = 0; k < step.start && end - begin >= c && t.compare(begin, c, step.content) == 0; ++k)
                begin += c;
            for (std::size_t k = 0; k < step.stop && end - begin >= c && t.compare(end - c, c, step.content) == 0; ++k)
                end -= c;
            t = t.substr(begin, end - begin);
        }
        break;
    }
}

// ---- reading tokenizer.json ---------------------------------------------------------------------

/// Reads one component object (or a Sequence of them, flattened) with `read_one(object, where, type)`.
/// `list_key` names the Sequence's array ("normalizers", "pretokenizers", "decoders").
template <class ReadOne>
void read_components(const io::json_value& value, const std::string& source, const std::string& where,
                     const char* list_key, ReadOne&& read_one) {
    if (!value.is_object())
        fail(errc::tokenizer_file, "'{}': {} must be an object, not {}", source, where, json_excerpt(value));
    const std::string type = bpe::optional_string(value, "type", source, where);
    if (type.empty()) fail(errc::tokenizer_file, "'{}': {} has no \"type\"", source, where);
    if (type != "Sequence") {
        read_one(value, where, type);
        return;
    }
    const auto list = value.find(list_key);
    if (!list || !list->is_array())
        fail(errc::tokenizer_file, "'{}': {}.{} must be an array", source, where, list_key);
    for (std::size_t i = 0; i < list->size(); ++i)
        read_components((*list)[i], source, fmt::format("{}.{}[{}]", where, list_key, i), list_key, read_one);
}

[[noreturn]] inline void unsupported(const std::string& source, const std::string& where, const std::string& type,
                                     const char* supported) {
    fail(errc::tokenizer_file, "'{}': {}.type is {}, which actlens does not implement (supported: {})", source,
         where, bpe::quote_piece(type), supported);
}

template <class Deferred = void>
std::string required_string(const io::json_value& object, const char* key, const std::string& source,
                            const std::string& where) {
    const auto it = object.find(key);
    if (!it || !it->is_string())
        fail(errc::tokenizer_file, "'{}': {}.{} must be a string, not {}", source, where, key,
             !it ? std::string("missing") : json_excerpt(*it));
    return it->as_string();
}

template <class Deferred = void>
std::size_t optional_count(const io::json_value& object, const char* key, const std::string& source,
                           const std::string& where) {
    const auto it = object.find(key);
    if (!it || it->is_null()) return 0;
    if (!it->is_unsigned())
        fail(errc::tokenizer_file, "'{}': {}.{} must be a non-negative integer, not {}", source, where, key,
             json_excerpt(*it));
    return it->integer_magnitude();
}

/// Metaspace's prepend_scheme, or the add_prefix_space of older files.
template <class Deferred = void>
prepend_scheme read_prepend_scheme(const io::json_value& object, const std::string& source,
                                   const std::string& where) {
    const std::string scheme = bpe::optional_string(object, "prepend_scheme", source, where);
    if (scheme.empty())
        return bpe::optional_bool(object, "add_prefix_space", true, source, where) ? prepend_scheme::always
                                                                                   : prepend_scheme::never;
    if (scheme == "always") return prepend_scheme::always;
    if (scheme == "first") return prepend_scheme::first;
    if (scheme == "never") return prepend_scheme::never;
    fail(errc::tokenizer_file, "'{}': {}.prepend_scheme is {}; expected \"always\", \"first\" or \"never\"", source,
         where, bpe::quote_piece(scheme));
}

template <class Deferred = void>
void read_normalizer(model& m, const io::json_value& root) {
    const auto it = root.find("normalizer");
    if (!it || it->is_null()) return;
    const std::string& source = m.source;
    read_components(*it, source, "normalizer", "normalizers",
                    [&](const io::json_value& n, const std::string& where, const std::string& type) {
                        normalizer_step step{normalizer_kind::nfc, {}, {}, false, false};
                        if (type == "NFC") {
                        } else if (type == "NFD") {
                            step.kind = normalizer_kind::nfd;
                        } else if (type == "NFKC") {
                            step.kind = normalizer_kind::nfkc;
                        } else if (type == "NFKD") {
                            step.kind = normalizer_kind::nfkd;
                        } else if (type == "Lowercase") {
                            step.kind = normalizer_kind::lowercase;
                        } else if (type == "StripAccents") {
                            step.kind = normalizer_kind::strip_accents;
                        } else if (type == "Prepend") {
                            step.kind = normalizer_kind::prepend;
                            step.content = required_string(n, "prepend", source, where);
                        } else if (type == "Replace") {
                            step.kind = normalizer_kind::replace;
                            step.what = read_pattern(n, source, where);
                            step.content = required_string(n, "content", source, where);
                        } else if (type == "Strip") {
                            step.kind = normalizer_kind::strip;
                            step.left = bpe::optional_bool(n, "strip_left", false, source, where);
                            step.right = bpe::optional_bool(n, "strip_right", false, source, where);
                        } else {
                            unsupported(source, where, type,
                                        "NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Prepend, Replace, Strip, "
                                        "Sequence");
                        }
                        m.normalizers.push_back(std::move(step));
                    });
}

template <class Deferred = void>
void read_pre_tokenizer(model& m, const io::json_value& root) {
    const auto it = root.find("pre_tokenizer");
    if (!it || it->is_null()) return;
    const std::string& source = m.source;
    read_components(*it, source, "pre_tokenizer", "pretokenizers",
                    [&](const io::json_value& p, const std::string& where, const std::string& type) {
                        pre_tokenizer_step step{};
                        if (type == "ByteLevel") {
                            step.kind = pre_tokenizer_kind::byte_level;
                            step.add_prefix_space = bpe::optional_bool(p, "add_prefix_space", true, source, where);
                            step.use_regex = bpe::optional_bool(p, "use_regex", true, source, where);
                            if (step.use_regex && !m.byte_level_pattern)
                                m.byte_level_pattern =
                                    bpe::compile_regex(bpe::gpt2_pattern, errc::invalid_argument,
                                                       "GPT-2's pre-tokenizer pattern (PCRE2 needs Unicode support)");
                        } else if (type == "Split") {
                            step.kind = pre_tokenizer_kind::split;
                            step.what = read_pattern(p, source, where);
                            step.behavior = read_behavior(p, source, where, split_behavior::isolated);
                            if (!p.contains("behavior"))
                                fail(errc::tokenizer_file, "'{}': {} has no \"behavior\"", source, where);
                            step.invert = bpe::optional_bool(p, "invert", false, source, where);
                        } else if (type == "Metaspace") {
                            step.kind = pre_tokenizer_kind::metaspace;
                            step.replacement = required_string(p, "replacement", source, where);
                            if (step.replacement.empty())
                                fail(errc::tokenizer_file, "'{}': {}.replacement is empty", source, where);
                            step.prepend = read_prepend_scheme(p, source, where);
                            step.split = bpe::optional_bool(p, "split", true, source, where);
                        } else if (type == "Digits") {
                            step.kind = pre_tokenizer_kind::digits;
                            step.individual_digits = bpe::optional_bool(p, "individual_digits", false, source, where);
                        } else if (type == "Punctuation") {
                            step.kind = pre_tokenizer_kind::punctuation;
                            step.behavior = read_behavior(p, source, where, split_behavior::isolated);
                        } else if (type == "Whitespace") {
                            // Hugging Face's pattern; the matches are kept, the rest removed.
                            step.kind = pre_tokenizer_kind::whitespace;
                            step.what = {R"(\w+|[^\w\s]+)", bpe::compile_regex(R"(\w+|[^\w\s]+)", errc::invalid_argument,
                                                                               "the Whitespace pre-tokenizer's pattern")};
                        } else if (type == "WhitespaceSplit") {
                            step.kind = pre_tokenizer_kind::whitespace_split;
                        } else {
                            unsupported(source, where, type,
                                        "ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace, "
                                        "WhitespaceSplit, Sequence");
                        }
                        m.pre_tokenizers.push_back(std::move(step));
                    });
}

template <class Deferred = void>
void read_decoder(model& m, const io::json_value& root) {
    const auto it = root.find("decoder");
    if (!it || it->is_null()) return;
    m.has_decoder = true;
    const std::string& source = m.source;
    read_components(*it, source, "decoder", "decoders",
                    [&](const io::json_value& d, const std::string& where, const std::string& type) {
                        decoder_step step{};
                        if (type == "ByteLevel") {
                            step.kind = decoder_kind::byte_level;
                        } else if (type == "Metaspace") {
                            step.kind = decoder_kind::metaspace;
                            step.replacement = required_string(d, "replacement", source, where);
                            if (step.replacement.empty())
                                fail(errc::tokenizer_file, "'{}': {}.replacement is empty", source, where);
                            step.prepend = read_prepend_scheme(d, source, where);
                        } else if (type == "Replace") {
                            step.kind = decoder_kind::replace;
                            step.what = read_pattern(d, source, where);
                            step.content = required_string(d, "content", source, where);
                        } else if (type == "ByteFallback") {
                            step.kind = decoder_kind::byte_fallback;
                        } else if (type == "Fuse") {
                            step.kind = decoder_kind::fuse;
                        } else if (type == "Strip") {
                            step.kind = decoder_kind::strip;
                            step.content = required_string(d, "content", source, where);
                            step.start = optional_count(d, "start", source, where);
                            step.stop = optional_count(d, "stop", source, where);
                        } else {
                            unsupported(source, where, type,
                                        "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence");
                        }
                        m.decoders.push_back(std::move(step));
                    });
}

/// The ids the post-processor puts before and after a single text.
template <class Deferred = void>
void read_post_processor(model& m, const io::json_value& value, const std::string& where) {
    const std::string& source = m.source;
    if (value.is_null()) return;
    if (!value.is_object())
        fail(errc::tokenizer_file, "'{}': {} must be an object or null, not {}", source, where, json_excerpt(value));
    const std::string type = bpe::optional_string(value, "type", source, where);
    if (type == "ByteLevel") return; // offsets only
    const auto special_id = [&](const io::json_value& pair, const char* key) {
        // BertProcessing's "cls" / "sep": ["[CLS]", 101].
        if (!pair.is_array() || pair.size() != 2 || !pair[1].is_integer())
            fail(errc::tokenizer_file, "'{}': {}.{} must be [token, id], not {}", source, where, key,
                 json_excerpt(pair));
        return static_cast<std::int32_t>(bpe::json_id(pair[1], source, where + "." + key));
    };
    if (type == "BertProcessing" || type == "RobertaProcessing") {
        if (!value.contains("cls") || !value.contains("sep"))
            fail(errc::tokenizer_file, "'{}': {} needs \"cls\" and \"sep\"", source, where);
        m.prefix.insert(m.prefix.begin(), special_id(value.at("cls"), "cls"));
        m.suffix.push_back(special_id(value.at("sep"), "sep"));
        return;
    }
    if (type == "Sequence") {
        const auto list = value.find("processors");
        if (!list || !list->is_array())
            fail(errc::tokenizer_file, "'{}': {}.processors must be an array", source, where);
        for (std::size_t i = 0; i < list->size(); ++i)
            read_post_processor(m, (*list)[i], fmt::format("{}.processors[{}]", where, i));
        return;
    }
    if (type != "TemplateProcessing")
        unsupported(source, where, type, "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence");
    const auto single = value.find("single");
    const auto specials = value.find("special_tokens");
    if (!single || !single->is_array())
        fail(errc::tokenizer_file, "'{}': {}.single must be an array", source, where);
    if (!specials || !specials->is_object())
        fail(errc::tokenizer_file, "'{}': {}.special_tokens must be an object", source, where);
    std::vector<std::int32_t> before, after;
    bool seen_text = false;
    for (std::size_t i = 0; i < single->size(); ++i) {
        const io::json_value& item = (*single)[i];
        const std::string at = fmt::format("{}.single[{}]", where, i);
        if (item.is_object() && item.contains("Sequence")) {
            if (seen_text) fail(errc::tokenizer_file, "'{}': {} is a second Sequence in a single template", source, at);
            seen_text = true;
            continue;
        }
        if (!item.is_object() || !item.contains("SpecialToken") || !item.at("SpecialToken").is_object())
            fail(errc::tokenizer_file, "'{}': {} must be {{\"SpecialToken\": ...}} or {{\"Sequence\": ...}}, not {}",
                 source, at, json_excerpt(item));
        const std::string name = required_string(item.at("SpecialToken"), "id", source, at + ".SpecialToken");
        const auto entry = specials->find(name);
        if (!entry || !entry->is_object() || !entry->contains("ids") || !entry->at("ids").is_array())
            fail(errc::tokenizer_file, "'{}': {} names {}, which {}.special_tokens does not give ids for", source, at,
                 bpe::quote_piece(name), where);
        for (const io::json_value& id : entry->at("ids").elements())
            (seen_text ? after : before).push_back(static_cast<std::int32_t>(bpe::json_id(id, source, at)));
    }
    if (!seen_text) fail(errc::tokenizer_file, "'{}': {}.single has no Sequence", source, where);
    m.prefix.insert(m.prefix.begin(), before.begin(), before.end());
    m.suffix.insert(m.suffix.end(), after.begin(), after.end());
}

template <class Deferred = void>
void read_model(model& m, const io::json_value& root, std::vector<bpe::vocab_entry>& entries) {
    const std::string& source = m.source;
    const auto model_it = root.find("model");
    if (!model_it || !model_it->is_object())
        fail(errc::tokenizer_file, "'{}' has no \"model\" object", source);
    const io::json_value& mj = *model_it;
    const std::string type = bpe::optional_string(mj, "type", source, "model");
    if (!type.empty() && type != "BPE")
        fail(errc::tokenizer_file, "'{}': model.type is {}; actlens implements \"BPE\" only", source,
             bpe::quote_piece(type));
    if (const auto it = mj.find("dropout");
        it && !it->is_null() && !(it->is_number() && it->as_double() == 0.0))
        fail(errc::tokenizer_file, "'{}': model.dropout is {}; only null or 0 is supported", source,
             json_excerpt(*it));
    m.continuing_prefix = bpe::optional_string(mj, "continuing_subword_prefix", source, "model");
    m.end_suffix = bpe::optional_string(mj, "end_of_word_suffix", source, "model");
    m.fuse_unk = bpe::optional_bool(mj, "fuse_unk", false, source, "model");
    m.byte_fallback = bpe::optional_bool(mj, "byte_fallback", false, source, "model");
    m.ignore_merges = bpe::optional_bool(mj, "ignore_merges", false, source, "model");
    const auto vocab = mj.find("vocab");
    if (!vocab) fail(errc::tokenizer_file, "'{}' has no model.vocab", source);
    bpe::read_vocab_object(*vocab, source, "model.vocab", entries);
}

/// added_tokens: those already in model.vocab must agree with it; the others extend it.
template <class Deferred = void>
void read_added_tokens(model& m, const io::json_value& root, std::vector<bpe::vocab_entry>& entries) {
    const std::string& source = m.source;
    const auto added = root.find("added_tokens");
    if (!added || added->is_null()) return;
    if (!added->is_array())
        fail(errc::tokenizer_file, "'{}': added_tokens must be an array, not {}", source, json_excerpt(*added));
    std::unordered_map<std::string_view, std::int64_t> in_vocab;
    for (const bpe::vocab_entry& e : entries)
        in_vocab.emplace(e.piece, e.id);
    std::vector<bpe::vocab_entry> extra;
    for (std::size_t i = 0; i < added->size(); ++i) {
        const io::json_value& t = (*added)[i];
        const std::string where = fmt::format("added_tokens[{}]", i);
        if (!t.is_object() || !t.contains("content") || !t.at("content").is_string() || !t.contains("id"))
            fail(errc::tokenizer_file, "'{}': {} must be an object with a string \"content\" and an integer \"id\"",
                 source, where);
        added_token a;
        a.content = t.at("content").as_string();
        if (a.content.empty()) fail(errc::tokenizer_file, "'{}': {} has an empty \"content\"", source, where);
        const std::int64_t id = bpe::json_id(t.at("id"), source, where);
        a.special = bpe::optional_bool(t, "special", false, source, where);
        // Hugging Face's default: special tokens are matched in the raw text, others after normalizing.
        a.normalized = bpe::optional_bool(t, "normalized", !a.special, source, where);
        a.lstrip = bpe::optional_bool(t, "lstrip", false, source, where);
        a.rstrip = bpe::optional_bool(t, "rstrip", false, source, where);
        a.single_word = bpe::optional_bool(t, "single_word", false, source, where);
        if (const auto v = in_vocab.find(a.content); v != in_vocab.end()) {
            if (v->second != id)
                fail(errc::tokenizer_file, "'{}': {} {} has id {}, but model.vocab gives it id {}", source, where,
                     bpe::quote_piece(a.content), id, v->second);
        } else {
            extra.push_back({a.content, id, fmt::format("{} {}", where, bpe::quote_piece(a.content))});
        }
        a.id = static_cast<std::int32_t>(std::clamp<std::int64_t>(id, -1, std::numeric_limits<std::int32_t>::max()));
        m.added.push_back(std::move(a));
    }
    entries.insert(entries.end(), std::make_move_iterator(extra.begin()), std::make_move_iterator(extra.end()));
}

/// After the vocabulary is set: tries, special flags, unk and byte tokens, merges.
template <class Deferred = void>
void finish_model(model& m, const io::json_value& root) {
    const std::string& source = m.source;
    m.special.assign(m.pieces.size(), false);
    for (std::size_t i = 0; i < m.added.size(); ++i) {
        const added_token& a = m.added[i];
        if (a.special) m.special[static_cast<std::size_t>(a.id)] = true;
        (a.normalized ? m.normalized_tokens : m.raw_tokens).insert(a.content, static_cast<std::int32_t>(i));
    }
    const io::json_value& mj = root.at("model");
    if (const std::string unk = bpe::optional_string(mj, "unk_token", source, "model"); !unk.empty()) {
        m.unk = m.find(unk);
        if (!m.unk)
            fail(errc::tokenizer_file, "'{}': model.unk_token {} is not in the vocabulary", source,
                 bpe::quote_piece(unk));
    }
    for (unsigned b = 0; b < 256; ++b)
        m.byte_tokens[b] = m.find(fmt::format("<0x{:02X}>", b)).value_or(-1);
    const auto merges = mj.find("merges");
    if (!merges) fail(errc::tokenizer_file, "'{}' has no model.merges", source);
    m.merges = bpe::read_merge_rules(m, bpe::read_json_merges(*merges, source), source, m.continuing_prefix);
    for (const std::int32_t id : m.prefix)
        if (id < 0 || static_cast<std::size_t>(id) >= m.pieces.size())
            fail(errc::tokenizer_file, "'{}': post_processor adds id {}, out of range ({} tokens)", source, id,
                 m.pieces.size());
    for (const std::int32_t id : m.suffix)
        if (id < 0 || static_cast<std::size_t>(id) >= m.pieces.size())
            fail(errc::tokenizer_file, "'{}': post_processor adds id {}, out of range ({} tokens)", source, id,
                 m.pieces.size());
}

inline std::optional<std::int32_t> first_special(const model& m, std::initializer_list<const char*> names) {
    for (const char* name : names)
        if (const auto id = m.find(name); id && m.special[static_cast<std::size_t>(*id)]) return id;
    return std::nullopt;
}

} // namespace detail::hf

template <class Deferred>
hf_tokenizer hf_tokenizer::load(const std::string& path) {
    const io::mapped_file file(path);
    return from_json(detail::bpe::as_text(file), path);
}

template <class Deferred>
hf_tokenizer hf_tokenizer::from_json(std::string_view json, const std::string& source) {
    return from_document(detail::bpe::parse_json<Deferred>(json, source), source);
}

template <class Deferred>
hf_tokenizer hf_tokenizer::from_document(const io::json_value& root, const std::string& source) {
    namespace d = detail::hf;
    if (!root.is_object())
        fail(errc::tokenizer_file, "'{}' must hold a JSON object, not {}", source, io::detail::json_excerpt(root));
    auto m = std::make_shared<d::model>();
    m->source = source;
    std::vector<detail::bpe::vocab_entry> entries;
    d::read_model(*m, root, entries);
    d::read_added_tokens(*m, root, entries);
    detail::bpe::set_pieces(*m, entries, source);
    d::read_normalizer(*m, root);
    d::read_pre_tokenizer(*m, root);
    if (const auto post = root.find("post_processor"); post)
        d::read_post_processor(*m, *post, "post_processor");
    d::read_decoder(*m, root);
    d::finish_model(*m, root);
    return hf_tokenizer(std::move(m));
}

inline std::vector<std::int32_t> hf_tokenizer::encode(std::string_view text, const encode_options& options) const {
    namespace d = detail::hf;
    const d::model& m = *m_model;
    d::require_utf8(text, m.source);
    std::vector<std::int32_t> ids;
    if (options.add_special_tokens) ids = m.prefix;
    detail::bpe::merge_scratch scratch;
    d::split_added(
        m, m.raw_tokens, text, options.parse_special_tokens,
        [&](std::string_view section, std::size_t offset) {
            d::encode_section(m, section, offset == 0, options.parse_special_tokens, scratch, ids);
        },
        [&](std::int32_t id) { ids.push_back(id); });
    if (options.add_special_tokens) ids.insert(ids.end(), m.suffix.begin(), m.suffix.end());
    return ids;
}

inline std::string hf_tokenizer::decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens) const {
    namespace d = detail::hf;
    const d::model& m = *m_model;
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::int32_t id = ids[i];
        if (id < 0 || static_cast<std::size_t>(id) >= m.pieces.size())
            fail(errc::token_out_of_range, "ids[{}] = {} is out of range for '{}' (vocab_size {})", i, id, m.source,
                 m.pieces.size());
        if (skip_special_tokens && m.special[static_cast<std::size_t>(id)]) continue;
        tokens.push_back(m.pieces[static_cast<std::size_t>(id)]);
    }
    std::string out;
    if (!m.has_decoder) {
        for (std::size_t i = 0; i < tokens.size(); ++i)
            out.append(i ? " " : "").append(tokens[i]);
        return out;
    }
    for (const d::decoder_step& step : m.decoders)
        d::apply(m, step, tokens);
    for (const std::string& t : tokens)
        out += t;
    return out;
}

inline std::string hf_tokenizer::normalize(std::string_view text) const {
    detail::hf::require_utf8(text, m_model->source);
    return detail::hf::normalize(*m_model, std::string(text));
}

inline std::vector<std::string> hf_tokenizer::pre_tokenize(std::string_view text) const {
    namespace d = detail::hf;
    std::vector<d::pre_token> pieces{{normalize(text), true}};
    for (const d::pre_tokenizer_step& step : m_model->pre_tokenizers)
        d::apply(*m_model, step, pieces);
    std::vector<std::string> out;
    for (d::pre_token& p : pieces)
        out.push_back(std::move(p.text));
    return out;
}

inline std::size_t hf_tokenizer::vocab_size() const noexcept { return m_model->pieces.size(); }

inline const std::string& hf_tokenizer::piece(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= m_model->pieces.size())
        fail(errc::token_out_of_range, "token id {} is out of range for '{}' (vocab_size {})", id, m_model->source,
             m_model->pieces.size());
    return m_model->pieces[static_cast<std::size_t>(id)];
}

inline std::optional<std::int32_t> hf_tokenizer::find_piece(std::string_view piece) const noexcept {
    return m_model->find(piece);
}

inline bool hf_tokenizer::is_special(std::int32_t id) const noexcept {
    return id >= 0 && static_cast<std::size_t>(id) < m_model->special.size() &&
           m_model->special[static_cast<std::size_t>(id)];
}

inline std::optional<std::int32_t> hf_tokenizer::bos_id() const noexcept {
    if (!m_model->prefix.empty()) return m_model->prefix.front();
    return detail::hf::first_special(*m_model, {"<s>", "<bos>", "<|begin_of_text|>"});
}

inline std::optional<std::int32_t> hf_tokenizer::eos_id() const noexcept {
    return detail::hf::first_special(*m_model, {"</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>"});
}

inline const std::string& hf_tokenizer::source() const noexcept { return m_model->source; }

template <class Deferred>
hf_tokenizer load_hf_tokenizer(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status))
        fail(errc::file_open, "cannot load a tokenizer from '{}': no such file or directory", path);
    if (!fs::is_directory(status)) return hf_tokenizer::load(path);
    const fs::path file = fs::path(path) / "tokenizer.json";
    if (!fs::exists(file, ec))
        fail(errc::file_open, "cannot load a tokenizer from directory '{}': it has no tokenizer.json", path);
    return hf_tokenizer::load(file.string());
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE hf_tokenizer hf_tokenizer::load<void>(const std::string&);
ACTLENS_EXTERN_TEMPLATE hf_tokenizer hf_tokenizer::from_json<void>(std::string_view, const std::string&);
ACTLENS_EXTERN_TEMPLATE hf_tokenizer hf_tokenizer::from_document<void>(const io::json_value&, const std::string&);
#endif

} // namespace actlens
