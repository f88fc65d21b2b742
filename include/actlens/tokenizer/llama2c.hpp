// actlens/tokenizer/llama2c.hpp: the tokenizer of llama2.c (`tokenizer.bin`, e.g. tok512.bin),
// encoding and decoding exactly as llama2.c's run.c does.
//
// File layout (little-endian, no header besides the first field, no vocabulary size):
//     int32 max_token_length
//     vocab_size times: float32 score, int32 length, `length` bytes of the piece (no terminator)
// The vocabulary size lives in the model checkpoint, not here; load() takes it, or infers it by
// reading records until the end of the file.
//
// Ids follow SentencePiece with byte fallback: 0 `<unk>`, 1 BOS (piece "\n<s>\n"), 2 EOS
// ("\n</s>\n"), 3..258 the byte tokens "<0x00>".."<0xFF>", then the merged pieces (with ' ' where
// SentencePiece has U+2581). load() checks the byte tokens, since encoding falls back to id `byte +
// 3`.
//
// Where this differs from run.c, only on input run.c cannot handle:
// - text is a string_view, so a NUL byte is encoded (as byte token 3) instead of ending the text;
// - a piece containing a NUL byte, an empty piece, or a piece longer than max_token_length is
// rejected
//   at load (run.c would truncate, fail to read, or overflow its merge buffer);
// - if the vocabulary has no piece " ", the dummy prefix falls back to its byte token like any
// other
//   missing codepoint (run.c would push id -1);
// - if two ids share a piece, lookups return the lowest id (run.c's bsearch returns either);
// - decode recognises a byte token only in the exact form "<0xHH>" (run.c's sscanf also accepts
//   malformed variants such as "<0x4"), and returns a NUL byte as a one-byte string.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/mapped_file.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace actlens {

/// A llama2.c BPE tokenizer: a vocabulary of pieces with scores, merged greedily by best score.
///
/// Immutable after loading; every method is `const` and safe to call concurrently. Copyable and
/// movable (a copy owns its vocabulary).
class llama2c_tokenizer {
public:
    /// Loads a llama2.c `tokenizer.bin`.
    ///
    /// `vocab_size` is the model's vocabulary size; the file must hold exactly that many records.
    /// Without it, the records are read until the end of the file, which must fall on a record
    /// boundary. Throws actlens::error: io.201 if the file cannot be opened, io.202 if a record is
    /// cut short, tokenizer.301 for anything else wrong with the file (empty file, negative or
    /// oversized lengths, non-finite scores, a vocabulary size that disagrees with `vocab_size`,
    /// fewer than 259 tokens, byte tokens not at ids 3..258). Every message names the file, the
    /// token and the value. O(V log V) in the vocabulary size V.
    template <class Deferred = void>
    static llama2c_tokenizer load(const std::string& path,
                                  std::optional<std::size_t> vocab_size = {});

    /// Parses a tokenizer file already in memory; `source` names it in errors. Same checks as
    /// load().
    template <class Deferred = void>
    static llama2c_tokenizer from_bytes(const std::byte* data, std::size_t size,
                                        const std::string& source,
                                        std::optional<std::size_t> vocab_size = {});

    /// Builds a tokenizer from pieces and scores given in id order (e.g. a vocabulary embedded in
    /// another format). max_token_length is the longest piece. Throws actlens::error: arg.101 when
    /// the two vectors differ in length, tokenizer.301 for the content checks of load().
    template <class Deferred = void>
    static llama2c_tokenizer from_pieces(std::vector<std::string> pieces, std::vector<float> scores,
                                         const std::string& source = "<pieces>");

    /// Encodes UTF-8 (or any bytes) exactly as run.c's encode(): optional BOS; if `text` is not
    /// empty, the id of the piece " " (the dummy prefix); each codepoint (a byte plus up to 3
    /// following continuation bytes) as its piece, or as byte tokens if it has none; then
    /// repeatedly merges the adjacent pair whose concatenation is the piece of highest score (the
    /// leftmost such pair on ties; pieces scored at or below -1e10 never merge); optional EOS.
    /// Never throws except std::bad_alloc; every id returned is < vocab_size().
    /// O(n log n) in the length of `text`.
    std::vector<std::int32_t> encode(std::string_view text, bool bos = true,
                                     bool eos = false) const;

    /// Decodes a sequence to text. BOS and EOS produce nothing, but the piece after a BOS drops
    /// its leading space (so decode(encode(s)) == s; without a BOS the dummy prefix space stays).
    /// Other tokens decode as decode_piece(previous id, id), with no previous id for the first one.
    /// Throws actlens::error tokenizer.302 naming the position and the id if an id is out of range.
    std::string decode(const std::vector<std::int32_t>& ids) const;

    /// The text run.c's decode(prev_token, token) gives for `token`: its piece, without the leading
    /// space if `prev` is BOS, or the raw byte if the piece is a byte token "<0xHH>". BOS and EOS
    /// give their pieces ("\n<s>\n", "\n</s>\n" in llama2.c exports); run.c never prints a BOS
    /// since it only appears as the first or a stopping token. `prev` may be any value (-1 for
    /// none). Throws actlens::error tokenizer.302 if `token` is out of range.
    std::string decode_piece(std::int32_t prev, std::int32_t token) const;

    /// Number of tokens in the vocabulary.
    std::size_t vocab_size() const noexcept { return m_pieces.size(); }

    /// The max_token_length field of the file (every piece is at most this long).
    std::size_t max_token_length() const noexcept { return m_max_token_length; }

    /// The stored piece of `id` (byte tokens as "<0xHH>"). Throws tokenizer.302 when out of range.
    const std::string& piece(std::int32_t id) const;

    /// The merge score of `id`. Throws tokenizer.302 when out of range.
    float score(std::int32_t id) const;

    /// The id whose piece is exactly `text` (the lowest such id), if any. O(|text| log V).
    std::optional<std::int32_t> find_piece(std::string_view text) const noexcept;

    /// The file (or `source`) the vocabulary came from, as used in error messages.
    const std::string& source() const noexcept { return m_source; }

    std::int32_t unk_id() const noexcept { return 0; }
    std::int32_t bos_id() const noexcept { return 1; }
    std::int32_t eos_id() const noexcept { return 2; }

private:
    llama2c_tokenizer() = default;

    template <class Deferred = void>
    void build_index();
    void check_id(std::int32_t id, const char* what) const;
    void append_piece(std::string& out, std::int32_t prev, std::int32_t token) const;
    void push_codepoint(std::vector<std::int32_t>& ids, std::string_view bytes) const;
    void merge_pairs(std::vector<std::int32_t>& ids) const;

    std::vector<std::string> m_pieces;
    std::vector<float> m_scores;
    std::vector<std::int32_t> m_sorted; // ids ordered by (piece, id): the lookup index
    std::size_t m_max_token_length = 0;
    std::size_t m_longest_piece = 0;
    std::string m_source;
};

// ------------------------------------------------------------------------------------------------
// Implementation
// ------------------------------------------------------------------------------------------------
// The loaders and their checks are templates of nothing (`template <class Deferred = void>`), so that
// they are compiled in the files that load a tokenizer, not in every file that includes this header
// (README "Compile time").

namespace detail::llama2c {

/// Smallest vocabulary with byte fallback: <unk>, <s>, </s> and the 256 byte tokens.
inline constexpr std::size_t min_vocab_size = 259;
inline constexpr std::int32_t first_byte_id = 3;

/// run.c starts its best-pair search at this score and replaces only on a strictly greater one, so
/// a piece scored at or below it can never be produced by a merge.
inline constexpr float no_merge_score = -1e10f;

inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/// The byte a piece of the form "<0xHH>" stands for, or -1.
inline int byte_piece_value(std::string_view piece) noexcept {
    if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
    const int hi = hex_value(piece[3]);
    const int lo = hex_value(piece[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/// A piece quoted for an error message: non-printable bytes escaped, long pieces cut.
inline std::string quoted(std::string_view text) {
    constexpr std::size_t max_shown = 40;
    std::string out = "\"";
    for (std::size_t i = 0; i < text.size() && i < max_shown; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("\\x{:02X}", c);
        }
    }
    out += text.size() > max_shown ? "\"..." : "\"";
    return out;
}

/// Checks what every source of pieces must satisfy; `index` is the token id.
template <class Deferred = void>
void check_entry(const std::string& source, std::size_t index, float score,
                 std::string_view piece) {
    if (!std::isfinite(score))
        fail(errc::tokenizer_file, "'{}': token {} has a non-finite score ({})", source, index,
             score);
    if (piece.empty())
        fail(errc::tokenizer_file, "'{}': token {} has an empty piece (length 0)", source, index);
    if (piece.find('\0') != std::string_view::npos)
        fail(errc::tokenizer_file, "'{}': token {} has a NUL byte in its piece {}", source, index,
             quoted(piece));
}

/// A candidate merge of the node at `left` with its successor, as seen when it was queued.
struct merge_candidate {
    float score;
    std::size_t left;
    std::int32_t left_id;
    std::int32_t right_id;
    std::int32_t merged_id;
};

/// Heap order: highest score first, then the leftmost pair (run.c's strict '>' keeps the first).
struct merge_after {
    bool operator()(const merge_candidate& a, const merge_candidate& b) const noexcept {
        if (a.score != b.score) return a.score < b.score;
        return a.left > b.left;
    }
};

} // namespace detail::llama2c

template <class Deferred>
llama2c_tokenizer llama2c_tokenizer::load(const std::string& path,
                                          std::optional<std::size_t> vocab_size) {
    const io::mapped_file file(path);
    return from_bytes(file.data(), file.size(), path, vocab_size);
}

template <class Deferred>
llama2c_tokenizer llama2c_tokenizer::from_bytes(const std::byte* data, std::size_t size,
                                                const std::string& source,
                                                std::optional<std::size_t> vocab_size) {
    namespace d = detail::llama2c;
    if (size == 0)
        fail(errc::tokenizer_file,
             "'{}' is empty: a llama2.c tokenizer starts with int32 max_token_length", source);
    io::byte_reader in(data, size, source);
    const auto max_length = in.read<std::int32_t>("max_token_length");
    if (max_length <= 0)
        fail(errc::tokenizer_file, "'{}': field 'max_token_length' is {}, must be positive", source,
             max_length);

    llama2c_tokenizer tok;
    tok.m_source = source;
    tok.m_max_token_length = static_cast<std::size_t>(max_length);
    // A record takes at least 9 bytes, which caps what a hostile vocab_size can make us reserve.
    const std::size_t record_bound = in.remaining() / 9;
    const std::size_t expected = vocab_size.value_or(record_bound);
    tok.m_pieces.reserve(std::min(expected, record_bound));
    tok.m_scores.reserve(std::min(expected, record_bound));
    const char* const mode = vocab_size ? "" : " (vocab_size inferred from the file size)";

    for (std::size_t i = 0; vocab_size ? i < *vocab_size : !in.at_end(); ++i) {
        if (in.at_end())
            fail(errc::tokenizer_file,
                 "'{}' holds {} tokens but vocab_size is {}: tokenizer and model disagree", source,
                 i, *vocab_size);
        const std::size_t offset = in.offset();
        if (in.remaining() < 8)
            fail(errc::file_truncated,
                 "'{}' is truncated: token {} needs 8 bytes for 'score' and 'length' at offset {}, "
                 "{} remain{}",
                 source, i, offset, in.remaining(), mode);
        const auto score = in.read<float>("score");
        const auto length = in.read<std::int32_t>("length");
        if (!std::isfinite(score))
            fail(errc::tokenizer_file, "'{}': token {} has a non-finite score ({}) at offset {}",
                 source, i, score, offset);
        if (length <= 0)
            fail(errc::tokenizer_file,
                 "'{}': token {} has field 'length' {} at offset {}, must be positive", source, i,
                 length, offset + 4);
        if (length > max_length)
            fail(errc::tokenizer_file,
                 "'{}': token {} has field 'length' {} at offset {}, more than max_token_length {}",
                 source, i, length, offset + 4, max_length);
        const auto n = static_cast<std::size_t>(length);
        if (n > in.remaining())
            fail(errc::file_truncated,
                 "'{}' is truncated: token {} needs {} bytes for its piece at offset {}, {} "
                 "remain{}",
                 source, i, n, in.offset(), in.remaining(), mode);
        const auto* bytes = reinterpret_cast<const char*>(in.take(n, "piece"));
        tok.m_pieces.emplace_back(bytes, n);
        tok.m_scores.push_back(score);
        d::check_entry(source, i, score, tok.m_pieces.back());
    }
    if (!in.at_end())
        fail(errc::tokenizer_file,
             "'{}' holds more than vocab_size {} tokens: {} bytes remain at offset {}: tokenizer "
             "and model disagree",
             source, *vocab_size, in.remaining(), in.offset());
    tok.build_index();
    return tok;
}

template <class Deferred>
llama2c_tokenizer llama2c_tokenizer::from_pieces(std::vector<std::string> pieces,
                                                 std::vector<float> scores,
                                                 const std::string& source) {
    if (pieces.size() != scores.size())
        fail(errc::invalid_argument, "'{}': {} pieces but {} scores", source, pieces.size(),
             scores.size());
    llama2c_tokenizer tok;
    tok.m_source = source;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        detail::llama2c::check_entry(source, i, scores[i], pieces[i]);
        tok.m_max_token_length = std::max(tok.m_max_token_length, pieces[i].size());
    }
    tok.m_pieces = std::move(pieces);
    tok.m_scores = std::move(scores);
    tok.build_index();
    return tok;
}

template <class Deferred>
void llama2c_tokenizer::build_index() {
    namespace d = detail::llama2c;
    const std::size_t n = m_pieces.size();
    if (n < d::min_vocab_size)
        fail(errc::tokenizer_file,
             "'{}' holds {} tokens; a llama2.c tokenizer needs at least {} (<unk>, <s>, </s> and "
             "256 byte tokens)",
             m_source, n, d::min_vocab_size);
    if (n > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        fail(errc::tokenizer_file, "'{}' holds {} tokens, more than int32 ids can address",
             m_source, n);
    // encode() falls back to id byte + 3 and decode() maps it back, so both rely on this layout.
    for (int b = 0; b < 256; ++b) {
        const std::string& p = m_pieces[static_cast<std::size_t>(b + d::first_byte_id)];
        if (d::byte_piece_value(p) != b)
            fail(errc::tokenizer_file,
                 "'{}': token {} should be the byte token \"<0x{:02X}>\" but is {}", m_source,
                 b + d::first_byte_id, b, d::quoted(p));
    }
    m_longest_piece = 0;
    for (const auto& p : m_pieces)
        m_longest_piece = std::max(m_longest_piece, p.size());

    m_sorted.resize(n);
    for (std::size_t i = 0; i < n; ++i)
        m_sorted[i] = static_cast<std::int32_t>(i);
    std::sort(m_sorted.begin(), m_sorted.end(), [this](std::int32_t a, std::int32_t b) {
        const int c = std::string_view(m_pieces[static_cast<std::size_t>(a)])
                          .compare(m_pieces[static_cast<std::size_t>(b)]);
        return c != 0 ? c < 0 : a < b;
    });
}

inline std::optional<std::int32_t>
llama2c_tokenizer::find_piece(std::string_view text) const noexcept {
    if (text.size() > m_longest_piece) return std::nullopt;
    const auto it = std::lower_bound(
        m_sorted.begin(), m_sorted.end(), text, [this](std::int32_t id, std::string_view key) {
            return std::string_view(m_pieces[static_cast<std::size_t>(id)]) < key;
        });
    if (it == m_sorted.end() || m_pieces[static_cast<std::size_t>(*it)] != text)
        return std::nullopt;
    return *it;
}

inline void llama2c_tokenizer::check_id(std::int32_t id, const char* what) const {
    if (id < 0 || static_cast<std::size_t>(id) >= m_pieces.size())
        fail(errc::token_out_of_range, "{} id {} is out of range for '{}' (vocab_size {})", what,
             id, m_source, m_pieces.size());
}

inline const std::string& llama2c_tokenizer::piece(std::int32_t id) const {
    check_id(id, "token");
    return m_pieces[static_cast<std::size_t>(id)];
}

inline float llama2c_tokenizer::score(std::int32_t id) const {
    check_id(id, "token");
    return m_scores[static_cast<std::size_t>(id)];
}

inline void llama2c_tokenizer::push_codepoint(std::vector<std::int32_t>& ids,
                                              std::string_view bytes) const {
    if (const auto id = find_piece(bytes)) {
        ids.push_back(*id);
        return;
    }
    for (const char c : bytes)
        ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c)) +
                      detail::llama2c::first_byte_id);
}

inline void llama2c_tokenizer::merge_pairs(std::vector<std::int32_t>& ids) const {
    namespace d = detail::llama2c;
    if (ids.size() < 2) return;

    // A doubly linked list over `ids`: a merge rewrites the left node and unlinks the right one, so
    // node indices keep sequence order and "leftmost" is "smallest index". Stale heap entries are
    // skipped when popped instead of being searched for and removed.
    constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
    const std::size_t n = ids.size();
    std::vector<std::size_t> prev(n), next(n);
    for (std::size_t i = 0; i < n; ++i) {
        prev[i] = i == 0 ? none : i - 1;
        next[i] = i + 1 == n ? none : i + 1;
    }

    std::string pair; // reused: one allocation per call, not per lookup
    pair.reserve(2 * m_longest_piece);
    std::priority_queue<d::merge_candidate, std::vector<d::merge_candidate>, d::merge_after> queue;
    const auto consider = [&](std::size_t left) {
        if (left == none || next[left] == none) return;
        const std::string& a = m_pieces[static_cast<std::size_t>(ids[left])];
        const std::string& b = m_pieces[static_cast<std::size_t>(ids[next[left]])];
        if (a.size() + b.size() > m_longest_piece) return;
        pair.assign(a).append(b);
        const auto merged = find_piece(pair);
        if (!merged) return;
        const float s = m_scores[static_cast<std::size_t>(*merged)];
        if (!(s > d::no_merge_score)) return;
        queue.push({s, left, ids[left], ids[next[left]], *merged});
    };
    for (std::size_t i = 0; i + 1 < n; ++i)
        consider(i);

    while (!queue.empty()) {
        const d::merge_candidate top = queue.top();
        queue.pop();
        const std::size_t left = top.left;
        const std::size_t right = next[left];
        // Nodes only ever grow by merging, so matching ids mean this pair is still current.
        if (ids[left] != top.left_id || right == none || ids[right] != top.right_id) continue;
        ids[left] = top.merged_id;
        ids[right] = -1;
        next[left] = next[right];
        if (next[right] != none) prev[next[right]] = left;
        consider(prev[left]);
        consider(left);
    }
    ids.erase(std::remove(ids.begin(), ids.end(), -1), ids.end());
}

inline std::vector<std::int32_t> llama2c_tokenizer::encode(std::string_view text, bool bos,
                                                           bool eos) const {
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() + 3);
    if (bos) ids.push_back(bos_id());
    // SentencePiece's add_dummy_prefix, as run.c approximates it.
    if (!text.empty()) push_codepoint(ids, " ");
    for (std::size_t i = 0; i < text.size();) {
        // run.c groups a byte with the continuation bytes that follow it, at most 4 bytes in all,
        // whether or not the first byte is a valid UTF-8 lead byte.
        std::size_t len = 1;
        while (len < 4 && i + len < text.size() &&
               (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80)
            ++len;
        push_codepoint(ids, text.substr(i, len));
        i += len;
    }
    // run.c merges with the BOS already in place, so BOS takes part in pair lookups too.
    merge_pairs(ids);
    if (eos) ids.push_back(eos_id());
    return ids;
}

inline void llama2c_tokenizer::append_piece(std::string& out, std::int32_t prev,
                                            std::int32_t token) const {
    std::string_view p = m_pieces[static_cast<std::size_t>(token)];
    // SentencePiece strips the leading whitespace of the first piece after BOS (llama2.c PR #89).
    if (prev == bos_id() && !p.empty() && p.front() == ' ') p.remove_prefix(1);
    if (const int byte = detail::llama2c::byte_piece_value(p); byte >= 0)
        out += static_cast<char>(static_cast<unsigned char>(byte));
    else
        out.append(p.data(), p.size());
}

inline std::string llama2c_tokenizer::decode_piece(std::int32_t prev, std::int32_t token) const {
    check_id(token, "token");
    std::string out;
    append_piece(out, prev, token);
    return out;
}

inline std::string llama2c_tokenizer::decode(const std::vector<std::int32_t>& ids) const {
    std::string out;
    std::int32_t prev = -1;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::int32_t id = ids[i];
        if (id < 0 || static_cast<std::size_t>(id) >= m_pieces.size())
            fail(errc::token_out_of_range, "ids[{}] = {} is out of range for '{}' (vocab_size {})",
                 i, id, m_source, m_pieces.size());
        if (id != bos_id() && id != eos_id()) append_piece(out, prev, id);
        prev = id;
    }
    return out;
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE llama2c_tokenizer llama2c_tokenizer::load<void>(const std::string&, std::optional<std::size_t>);
ACTLENS_EXTERN_TEMPLATE llama2c_tokenizer llama2c_tokenizer::from_bytes<void>(const std::byte*, std::size_t,
                                                                              const std::string&,
                                                                              std::optional<std::size_t>);
ACTLENS_EXTERN_TEMPLATE llama2c_tokenizer llama2c_tokenizer::from_pieces<void>(std::vector<std::string>,
                                                                               std::vector<float>, const std::string&);
#endif

} // namespace actlens
