// actlens/tokenizer/detail/bpe_core.hpp: what GPT-2's tokenizer (bpe.hpp) and the general Hugging
// Face tokenizer (hf_tokenizer.hpp) share: UTF-8 helpers, GPT-2's byte-to-unicode table, PCRE2
// patterns, reading and checking a vocabulary and its merges, and the merge loop of BPE.
#pragma once

#include <actlens/core/utf8.hpp>
#include <actlens/error.hpp>
#include <actlens/io/json.hpp>
#include <actlens/io/mapped_file.hpp>

#include <fmt/core.h>

// pcre2.h needs a code unit width; this header calls the 8-bit functions by their explicit `_8`
// names, so it works whatever width an including file chose before.
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#if PCRE2_MAJOR < 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR < 40)
#error "actlens/tokenizer needs PCRE2 10.40 or newer (for \\p{White_Space})"
#endif

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace actlens::detail::bpe {

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

using utf8::append_utf8;
using utf8::decode_utf8;
using utf8::utf8_char;

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

/// GPT-2's pre-tokenizer pattern (also Hugging Face's ByteLevel pre-tokenizer's); compile_regex
/// gives \s the meaning of Python's `regex` module (the White_Space property).
inline constexpr const char* gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// A compiled PCRE2 pattern (8-bit, UTF + UCP), shared by the copies of a tokenizer.
using regex = std::shared_ptr<const pcre2_code_8>;

/// `pattern` with \s and \S written as the White_Space property: what Python's `regex`, Rust's
/// `onig` and Hugging Face mean by \s (PCRE2 10.42's \s also matches U+180E). An escaped backslash
/// ("\\s") is left alone.
inline std::string white_space_classes(std::string_view pattern) {
    std::string out;
    out.reserve(pattern.size());
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] == '\\' && i + 1 < pattern.size()) {
            const char next = pattern[++i];
            if (next == 's')
                out += "\\p{White_Space}";
            else if (next == 'S')
                out += "\\P{White_Space}";
            else
                out.append(1, '\\').append(1, next);
            continue;
        }
        out += pattern[i];
    }
    return out;
}

/// Compiles `pattern` (after white_space_classes). Throws actlens::error `code` with `what` (the file
/// and field the pattern came from), the offset and PCRE2's reason when it does not compile.
inline regex compile_regex(std::string_view pattern, errc code, const std::string& what) {
    const std::string translated = white_space_classes(pattern);
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code_8* re = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(translated.data()), translated.size(),
                                       PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (!re) {
        PCRE2_UCHAR8 message[256];
        pcre2_get_error_message_8(error, message, sizeof message);
        fail(code, "{} {} does not compile (PCRE2, at offset {} of {}): {}", what, quote_piece(pattern), offset,
             quote_piece(translated), reinterpret_cast<const char*>(message));
    }
    // JIT is only an acceleration: where it is unavailable (no JIT support, no executable memory)
    // pcre2_match interprets the same pattern with the same results.
    (void)pcre2_jit_compile_8(re, PCRE2_JIT_COMPLETE);
    return regex(re, [](const pcre2_code_8* c) { pcre2_code_free_8(const_cast<pcre2_code_8*>(c)); });
}

struct match_data_deleter {
    void operator()(pcre2_match_data_8* data) const noexcept { pcre2_match_data_free_8(data); }
};

/// Calls `on_match(start, end)` for each non-empty match of `re` in `text`, left to right, without
/// overlap; an empty match moves on by one character (as Rust's and Python's find-all do). `text`
/// must be valid UTF-8 (it is matched with PCRE2_NO_UTF_CHECK). `source` names the tokenizer if
/// PCRE2 reports a resource limit (actlens::error arg.101).
template <class F>
void for_each_match(const regex& re, std::string_view text, const std::string& source, F&& on_match) {
    std::unique_ptr<pcre2_match_data_8, match_data_deleter> data(pcre2_match_data_create_8(1, nullptr));
    if (!data) throw std::bad_alloc();
    const auto* subject = reinterpret_cast<PCRE2_SPTR8>(text.data());
    std::size_t pos = 0;
    while (pos < text.size()) {
        const int rc = pcre2_match_8(re.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) return;
        if (rc < 0) {
            PCRE2_UCHAR8 message[256];
            pcre2_get_error_message_8(rc, message, sizeof message);
            fail(errc::invalid_argument, "'{}': pre-tokenizing failed at byte {} of {}: {}", source, pos, text.size(),
                 reinterpret_cast<const char*>(message));
        }
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer_8(data.get());
        const std::size_t start = ovector[0], end = ovector[1];
        if (end > start) {
            on_match(start, end);
            pos = end;
        } else {
            const std::size_t step = decode_utf8(text, start).length;
            pos = start + (step == 0 ? 1 : step);
        }
    }
}

/// What merging the pair (left, right) gives, and how early.
struct merge_rule {
    std::int32_t rank;
    std::int32_t merged;
};

inline std::uint64_t pair_key(std::int32_t left, std::int32_t right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

/// pair_key(left, right) -> rule.
using merge_table = std::unordered_map<std::uint64_t, merge_rule>;

/// Pieces by id and their index. Not copyable: `index` points into this object's own `pieces`.
struct vocabulary {
    std::vector<std::string> pieces;                          // by id, as in the file
    std::unordered_map<std::string_view, std::int32_t> index; // piece -> id (views into `pieces`)

    vocabulary() = default;
    vocabulary(const vocabulary&) = delete;
    vocabulary& operator=(const vocabulary&) = delete;

    std::optional<std::int32_t> find(std::string_view piece) const noexcept {
        const auto it = index.find(piece);
        if (it == index.end()) return std::nullopt;
        return it->second;
    }
};

inline std::string_view as_text(const io::mapped_file& file) {
    return {reinterpret_cast<const char*>(file.data()), file.size()};
}

// The functions that read JSON are templates of nothing, so that the JSON code is compiled only in
// the files that load a tokenizer (README "Compile time").

/// Parses a tokenizer file (io/json.hpp: bounded nesting, valid UTF-8, no key named twice).
template <class Deferred = void>
io::json_value parse_json(std::string_view text, const std::string& source) {
    if (text.empty()) fail(errc::tokenizer_file, "'{}' is empty: expected a JSON object", source);
    return io::parse_json<Deferred>(text, source, errc::tokenizer_file);
}

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

/// A JSON value that must be an integer id; returns it as int64 (range is checked later). `what`
/// names it in errors.
template <class Deferred = void>
std::int64_t json_id(const io::json_value& value, const std::string& source,
                     const std::string& what) {
    if (value.is_unsigned()) {
        const std::uint64_t u = value.integer_magnitude();
        return u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                   ? std::numeric_limits<std::int64_t>::max()
                   : static_cast<std::int64_t>(u);
    }
    if (value.is_integer()) return value.as_int64();
    fail(errc::tokenizer_file, "'{}': {} has id {}, which is not an integer", source, what,
         io::detail::json_excerpt(value));
}

/// Reads vocab.json-style {piece: id} into entries.
template <class Deferred = void>
void read_vocab_object(const io::json_value& vocab, const std::string& source,
                       const char* field, std::vector<vocab_entry>& out) {
    if (!vocab.is_object())
        fail(errc::tokenizer_file, "'{}': {} must be a JSON object {{piece: id}}, not {}", source,
             field[0] ? field : "the top-level value", vocab.type_name());
    out.reserve(out.size() + vocab.size());
    for (const auto& [piece, id_value] : vocab.members()) {
        std::string where = fmt::format("{}entry {}", field[0] ? std::string(field) + " " : "",
                                        quote_piece(piece));
        const std::int64_t id = json_id(id_value, source, where);
        out.push_back({piece, id, std::move(where)});
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

template <class Deferred = void>
std::vector<merge_entry> read_merges_txt(std::string_view text, const std::string& source) {
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

template <class Deferred = void>
std::vector<merge_entry> read_json_merges(const io::json_value& merges,
                                          const std::string& source) {
    if (!merges.is_array())
        fail(errc::tokenizer_file, "'{}': model.merges must be an array, not {}", source,
             merges.type_name());
    std::vector<merge_entry> out;
    out.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
        const io::json_value& m = merges[i];
        std::string where = fmt::format("model.merges[{}]", i);
        if (m.is_string()) {
            const auto& s = m.as_string();
            const auto sides = split_merge(s);
            if (!sides)
                fail(errc::tokenizer_file,
                     "'{}': {} is {}: a merge is two pieces separated by one space", source, where,
                     quote_piece(s));
            out.push_back({sides->first, sides->second, std::move(where)});
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            out.push_back({m[0].as_string(), m[1].as_string(),
                           std::move(where)});
        } else {
            fail(errc::tokenizer_file,
                 "'{}': {} is a {}: a merge is a string \"left right\" or an array of two strings",
                 source, where, m.type_name());
        }
    }
    return out;
}

/// Checks the entries (ids 0..N-1, each once, no piece twice) and fills pieces and the index.
template <class Deferred = void>
void set_pieces(vocabulary& v, std::vector<vocab_entry>& entries, const std::string& source) {
    const std::size_t n = entries.size();
    if (n > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        fail(errc::tokenizer_file, "'{}' holds {} tokens, more than int32 ids can address", source, n);
    constexpr std::size_t unset = std::numeric_limits<std::size_t>::max();
    std::vector<std::size_t> owner(n, unset); // entry index holding each id
    for (std::size_t e = 0; e < n; ++e) {
        const std::int64_t id = entries[e].id;
        if (id < 0 || static_cast<std::uint64_t>(id) >= n)
            fail(errc::tokenizer_file, "'{}': {} has id {}, out of range: {} tokens have ids 0..{}", source,
                 entries[e].where, id, n, n - 1);
        std::size_t& o = owner[static_cast<std::size_t>(id)];
        if (o != unset)
            fail(errc::tokenizer_file, "'{}': {} and {} both have id {}", source, entries[o].where, entries[e].where,
                 id);
        o = e;
    }
    // Every id is owned now (n distinct ids in 0..n-1).
    v.pieces.resize(n);
    for (std::size_t id = 0; id < n; ++id)
        v.pieces[id] = std::move(entries[owner[id]].piece);
    v.index.reserve(n);
    for (std::size_t id = 0; id < n; ++id) {
        const auto [it, inserted] = v.index.emplace(std::string_view(v.pieces[id]), static_cast<std::int32_t>(id));
        if (!inserted)
            fail(errc::tokenizer_file, "'{}': {} and {} are the same piece (ids {} and {})", source,
                 entries[owner[static_cast<std::size_t>(it->second)]].where, entries[owner[id]].where, it->second,
                 id);
    }
}

/// The merge table of `merges` over `v`: every merge names two pieces of the vocabulary and makes
/// one (the left piece followed by the right one without its `continuing_prefix`, as Hugging Face
/// joins them). A pair listed twice keeps its last rank, as in encoder.py's dict and Hugging
/// Face's map.
template <class Deferred = void>
merge_table read_merge_rules(const vocabulary& v, const std::vector<merge_entry>& merges,
                             const std::string& source, std::string_view continuing_prefix = {}) {
    if (merges.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        fail(errc::tokenizer_file, "'{}' holds {} merges, more than int32 ranks can address", source, merges.size());
    merge_table table;
    table.reserve(merges.size());
    std::string joined;
    for (std::size_t r = 0; r < merges.size(); ++r) {
        const merge_entry& e = merges[r];
        const auto left = v.find(e.left);
        const auto right = v.find(e.right);
        if (!left || !right)
            fail(errc::tokenizer_file, "'{}': merge at {} ({} {}) names piece {}, which is not in the vocabulary",
                 source, e.where, quote_piece(e.left), quote_piece(e.right), quote_piece(left ? e.right : e.left));
        std::string_view tail = e.right;
        if (!continuing_prefix.empty() && tail.substr(0, continuing_prefix.size()) == continuing_prefix)
            tail.remove_prefix(continuing_prefix.size());
        joined.assign(e.left).append(tail);
        const auto merged = v.find(joined);
        if (!merged)
            fail(errc::tokenizer_file, "'{}': merge at {} ({} {}) makes {}, which is not in the vocabulary", source,
                 e.where, quote_piece(e.left), quote_piece(e.right), quote_piece(joined));
        table.insert_or_assign(pair_key(*left, *right), merge_rule{static_cast<std::int32_t>(r), *merged});
    }
    return table;
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

/// The order in which merges apply.
enum class merge_order {
    /// OpenAI's encoder.py: the best-ranked pair is merged at all its occurrences, left to right,
    /// before any pair those merges form is considered.
    rounds,
    /// Hugging Face tokenizers (and transformers.js): always the best-ranked pair present, leftmost
    /// first, pairs formed by a merge competing at once.
    best_first,
};

/// Merges the symbols in `s.symbols` (ids) with `merges` and appends the result to `out`. The two
/// orders agree for merge lists learned by BPE training (a token is used only after the merge that
/// makes it). O(n log n) in the number of symbols.
inline void merge_symbols(const merge_table& merges, merge_order order, merge_scratch& s,
                          std::vector<std::int32_t>& out) {
    const std::size_t n = s.symbols.size();
    if (n <= 1) {
        out.insert(out.end(), s.symbols.begin(), s.symbols.end());
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
        const auto it = merges.find(pair_key(a, b));
        if (it == merges.end()) return;
        into.push_back({it->second.rank, it->second.merged, a, b, left});
        if (&into == &s.heap) std::push_heap(s.heap.begin(), s.heap.end(), after{});
    };
    for (std::size_t i = 0; i + 1 < n; ++i)
        consider(i, s.heap);
    // In rounds, pairs formed meanwhile wait in `pending` until the round is over, even if they
    // rank better; best-first queues them at once.
    std::vector<candidate>& formed = order == merge_order::rounds ? s.pending : s.heap;

    while (!s.heap.empty()) {
        const std::int32_t rank = s.heap.front().rank;
        while (!s.heap.empty() && s.heap.front().rank == rank) {
            std::pop_heap(s.heap.begin(), s.heap.end(), after{});
            const candidate c = s.heap.back();
            s.heap.pop_back();
            const std::size_t left = c.left, right = s.next[left];
            // A node only changes by merging, which changes its id, so equal ids mean this pair is
            // still the current one.
            if (s.symbols[left] != c.left_id || right == none || s.symbols[right] != c.right_id) continue;
            s.symbols[left] = c.merged;
            s.symbols[right] = gone;
            s.next[left] = s.next[right];
            if (s.next[right] != none) s.prev[s.next[right]] = left;
            consider(s.prev[left], formed);
            consider(left, formed);
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

/// Reads an optional string field of a settings object ("" when absent or null).
template <class Deferred = void>
std::string optional_string(const io::json_value& object, const char* key, const std::string& source,
                            const std::string& path) {
    const auto it = object.find(key);
    if (!it || it->is_null()) return {};
    if (!it->is_string())
        fail(errc::tokenizer_file, "'{}': {}.{} must be a string, not {}", source, path, key, io::detail::json_excerpt(*it));
    return it->as_string();
}

/// Reads an optional boolean field of a settings object.
template <class Deferred = void>
bool optional_bool(const io::json_value& object, const char* key, bool fallback, const std::string& source,
                   const std::string& path) {
    const auto it = object.find(key);
    if (!it || it->is_null()) return fallback;
    if (!it->is_bool())
        fail(errc::tokenizer_file, "'{}': {}.{} must be true or false, not {}", source, path, key,
             io::detail::json_excerpt(*it));
    return it->as_bool();
}

} // namespace actlens::detail::bpe
