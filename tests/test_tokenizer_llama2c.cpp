// Tests of actlens/tokenizer/llama2c.hpp: the real stories260K tokenizer (tok512.bin), a naive
// reference encoder, a small synthetic vocabulary for tie-breaking, and hostile files.
#include <actlens/tokenizer/llama2c.hpp>

#include "test_files.hpp"
#include "paths.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

using actlens::llama2c_tokenizer;
using Catch::Matchers::Contains;
using ids_t = std::vector<std::int32_t>;

namespace {

const std::string tok512_path = actlens::test_paths::model("tok512.bin");

// The first greedy ids of stories260K after BOS, from the model's README.
const ids_t known_greedy_ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421};

llama2c_tokenizer tok512() { return llama2c_tokenizer::load(tok512_path, 512); }

// Builds tokenizer files field by field, so tests can write any value into any field.
struct file_builder {
    std::string bytes;
    template <class V>
    file_builder& put(V value) {
        char raw[sizeof(V)];
        std::memcpy(raw, &value, sizeof(V));
        bytes.append(raw, sizeof(V));
        return *this;
    }
    file_builder& record(float score, const std::string& piece) {
        put(score).put(static_cast<std::int32_t>(piece.size()));
        bytes += piece;
        return *this;
    }
};

std::string byte_piece(int b) {
    static const char* hex = "0123456789ABCDEF";
    return std::string("<0x") + hex[b / 16] + hex[b % 16] + ">";
}

// <unk>, BOS, EOS and the 256 byte tokens, as in every llama2.c export.
std::vector<std::pair<float, std::string>> base_vocab() {
    std::vector<std::pair<float, std::string>> v = {
        {0.f, "<unk>"}, {0.f, "\n<s>\n"}, {0.f, "\n</s>\n"}};
    for (int b = 0; b < 256; ++b)
        v.emplace_back(0.f, byte_piece(b));
    return v;
}

// A small vocabulary with tied scores and a piece below run.c's -1e10 floor.
std::vector<std::pair<float, std::string>> synthetic_llama2c_vocab() {
    auto v = base_vocab();
    v.insert(v.end(), {{-1.f, " "},                  // 259
                       {-1.f, "a"},                  // 260
                       {-1.f, "b"},                  // 261
                       {-5.f, "aa"},                 // 262
                       {-5.f, "ab"},                 // 263
                       {-5.f, "ba"},                 // 264
                       {-3e10f, "bb"},               // 265: never merged
                       {-4.f, "aab"},                // 266
                       {-6.f, " a"},                 // 267
                       {-1.f, "\xC3\xA9"},           // 268: "é" as one codepoint piece
                       {-1.f, "\xF0\x9F\x99\x82"},   // 269: a 4-byte codepoint piece
                       {-1.f, "\x80\x80\x80\x80"}}); // 270: 4 stray continuation bytes
    return v;
}

file_builder file_of(const std::vector<std::pair<float, std::string>>& vocab,
                     std::int32_t max_length = 7) {
    file_builder f;
    f.put(max_length);
    for (const auto& [score, piece] : vocab)
        f.record(score, piece);
    return f;
}

llama2c_tokenizer synthetic_tokenizer() {
    const std::string bytes = file_of(synthetic_llama2c_vocab()).bytes;
    return llama2c_tokenizer::from_bytes(reinterpret_cast<const std::byte*>(bytes.data()),
                                         bytes.size(), "synthetic");
}

// Deliberately naive reference of run.c's encode(): a linear scan of the whole vocabulary for every
// lookup and a rescan of every pair after every merge.
int naive_lookup(const llama2c_tokenizer& tok, const std::string& text) {
    for (std::size_t id = 0; id < tok.vocab_size(); ++id)
        if (tok.piece(static_cast<std::int32_t>(id)) == text) return static_cast<int>(id);
    return -1;
}

ids_t naive_encode(const llama2c_tokenizer& tok, const std::string& text, bool bos) {
    ids_t ids;
    if (bos) ids.push_back(1);
    std::vector<std::string> units;
    if (!text.empty()) units.push_back(" ");
    for (std::size_t i = 0; i < text.size();) {
        std::size_t n = 1;
        while (n < 4 && i + n < text.size() &&
               (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
            ++n;
        units.push_back(text.substr(i, n));
        i += n;
    }
    for (const auto& unit : units) {
        const int id = naive_lookup(tok, unit);
        if (id >= 0) {
            ids.push_back(id);
        } else {
            for (const char c : unit)
                ids.push_back(static_cast<unsigned char>(c) + 3);
        }
    }
    while (true) {
        float best_score = -1e10f;
        int best_index = -1;
        int best_id = -1;
        for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
            const int id = naive_lookup(tok, tok.piece(ids[i]) + tok.piece(ids[i + 1]));
            if (id >= 0 && tok.score(id) > best_score) {
                best_score = tok.score(id);
                best_index = static_cast<int>(i);
                best_id = id;
            }
        }
        if (best_index < 0) break;
        ids[static_cast<std::size_t>(best_index)] = best_id;
        ids.erase(ids.begin() + best_index + 1);
    }
    return ids;
}

std::string random_text(std::mt19937& rng, const std::vector<std::string>& alphabet,
                        std::size_t max_units) {
    std::uniform_int_distribution<std::size_t> length(0, max_units);
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string s;
    for (std::size_t i = length(rng); i > 0; --i)
        s += alphabet[pick(rng)];
    return s;
}

std::vector<std::string> printable_and_multibyte() {
    std::vector<std::string> a;
    for (char c = 0x20; c < 0x7f; ++c)
        a.emplace_back(1, c);
    for (const char* s : {"\n", "\t", "\xC3\xA9", "\xC3\xBC", "\xE6\x97\xA5", "\xE6\x9C\xAC",
                          "\xF0\x9F\x99\x82", "\xE2\x80\x8A", "  ", " the", " was", "ing"})
        a.emplace_back(s);
    return a;
}

// The what() of the actlens::error `f` throws, or "" (with a failure) if it throws none.
template <class F>
std::string error_text(F&& f) {
    try {
        f();
    } catch (const actlens::error& e) {
        return e.what();
    }
    FAIL_CHECK("no actlens::error was thrown");
    return "";
}

} // namespace

TEST_CASE("llama2c_tokenizer: loads tok512.bin with the given or inferred vocab_size",
          "[tokenizer]") {
    const auto tok = tok512();
    CHECK(tok.vocab_size() == 512);
    CHECK(tok.max_token_length() == 7);
    CHECK(tok.source() == tok512_path);
    CHECK(tok.piece(0) == "<unk>");
    CHECK(tok.piece(1) == "\n<s>\n");
    CHECK(tok.piece(2) == "\n</s>\n");
    CHECK(tok.piece(3) == "<0x00>");
    CHECK(tok.piece(258) == "<0xFF>");
    CHECK(tok.piece(403) == " Once");
    CHECK(tok.score(403) == -144.f);
    CHECK(tok.find_piece(" ") == std::optional<std::int32_t>(410));
    CHECK(tok.find_piece(" Once") == std::optional<std::int32_t>(403));
    CHECK_FALSE(tok.find_piece("not a piece").has_value());
    CHECK(tok.bos_id() == 1);
    CHECK(tok.eos_id() == 2);

    const auto inferred = llama2c_tokenizer::load(tok512_path);
    REQUIRE(inferred.vocab_size() == 512);
    for (std::int32_t id = 0; id < 512; ++id) {
        CHECK(inferred.piece(id) == tok.piece(id));
        CHECK(inferred.score(id) == tok.score(id));
    }
}

TEST_CASE("llama2c_tokenizer: the model's known greedy ids decode to the README's text",
          "[tokenizer]") {
    const auto tok = tok512();
    const std::string text = tok.decode(known_greedy_ids);
    // " g" + "ir" + "l": the twelfth id ends mid-word, inside "girl".
    CHECK(text == "Once upon a time, there was a little girl");
    const std::string readme = "Once upon a time, there was a little girl named Lily.";
    CHECK(readme.compare(0, text.size(), text) == 0);
}

TEST_CASE("llama2c_tokenizer: encoding the README sentence reproduces the model's ids",
          "[tokenizer]") {
    const auto tok = tok512();
    const std::string sentence = "Once upon a time, there was a little girl named Lily.";
    const ids_t ids = tok.encode(sentence);
    // BPE gives the same segmentation the model generated, then " named" " Lily" ".".
    ids_t expected = known_greedy_ids;
    expected.insert(expected.end(), {395, 317, 426});
    CHECK(ids == expected);
    CHECK(tok.decode(ids) == sentence);
}

TEST_CASE("llama2c_tokenizer: encode matches ids from llama2.c run.c", "[tokenizer]") {
    // Golden ids: llama2.c's run.c encode(text, bos=1, eos=0) on tok512.bin, built and run locally.
    const auto tok = tok512();
    CHECK(tok.encode("The cat") == ids_t{1, 291, 280, 294});
    CHECK(tok.encode("Lily and Ben went to the park. Ben gave the ball to") ==
          ids_t{1,   317, 269, 368, 302, 263, 377, 267, 265, 282, 295,
                433, 426, 368, 302, 298, 412, 360, 265, 268, 388, 267});
    CHECK(tok.encode("h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82") ==
          ids_t{1, 270, 485, 306, 414, 410, 233, 154, 168, 233, 159, 175, 410, 243, 162, 156, 133});
    CHECK(tok.encode("  two  spaces\nnew line") == ids_t{1, 410, 410, 259, 424, 414, 410, 262, 427,
                                                         412, 331, 419, 13, 416, 411, 424, 278, 271,
                                                         411});
    // A literal "<0x41>" stays text: no merge reaches the byte token's piece in this vocabulary.
    CHECK(tok.encode("<0x41>") == ids_t{1, 410, 504, 477, 444, 484, 475, 505});
    CHECK(tok.encode("a") == ids_t{1, 261});
}

TEST_CASE("llama2c_tokenizer: BOS, EOS and the dummy prefix", "[tokenizer]") {
    const auto tok = tok512();
    CHECK(tok.encode("") == ids_t{1});
    CHECK(tok.encode("", false) == ids_t{});
    CHECK(tok.encode("", true, true) == ids_t{1, 2});
    CHECK(tok.encode("", false, true) == ids_t{2});
    CHECK(tok.encode("a", false) == ids_t{261});
    CHECK(tok.encode("a", true, true) == ids_t{1, 261, 2});
    CHECK(tok.encode(" ", false) == ids_t{410, 410});
    // Without BOS the dummy prefix's space survives decoding, as in SentencePiece.
    CHECK(tok.decode(tok.encode("The cat", false)) == " The cat");
    CHECK(tok.decode(tok.encode("The cat", true, true)) == "The cat");
}

TEST_CASE("llama2c_tokenizer: decode_piece follows run.c's decode", "[tokenizer]") {
    const auto tok = tok512();
    CHECK(tok.decode_piece(-1, 403) == " Once");
    CHECK(tok.decode_piece(1, 403) == "Once");  // after BOS the leading space goes
    CHECK(tok.decode_piece(2, 403) == " Once"); // but not after EOS or anything else
    CHECK(tok.decode_piece(403, 407) == " upon");
    CHECK(tok.decode_piece(1, 410) == "");       // the piece " " alone after BOS
    CHECK(tok.decode_piece(-1, 3 + 'A') == "A"); // byte tokens give their raw byte
    CHECK(tok.decode_piece(1, 3 + ' ') == " ");  // "<0x20>" has no leading space to strip
    CHECK(tok.decode_piece(-1, 3 + 0xE6) == "\xE6");
    CHECK(tok.decode_piece(-1, 3) == std::string(1, '\0'));
    CHECK(tok.decode_piece(-1, 1) == "\n<s>\n"); // run.c's pieces for BOS and EOS
    CHECK(tok.decode_piece(-1, 2) == "\n</s>\n");
    CHECK(tok.decode_piece(-1, 504) == "<");

    // Sequence decoding drops BOS and EOS themselves, wherever they are.
    CHECK(tok.decode({}) == "");
    CHECK(tok.decode({1}) == "");
    CHECK(tok.decode({1, 403, 2}) == "Once");
    CHECK(tok.decode({403, 2, 403, 1, 403}) == " Once Once"
                                               "Once");
}

TEST_CASE("llama2c_tokenizer: decode(encode(s)) == s on varied text", "[tokenizer]") {
    const auto tok = tok512();
    const std::vector<std::string> texts = {
        "Once upon a time, there was a little girl named Lily.",
        "The cat sat on the mat!!! 12345 67890 $%&*()[]{}~`|\\/<>?",
        "  leading spaces",
        "trailing spaces   ",
        "multiple   spaces\tand\ttabs",
        "new\nlines\n\n\nand\r\nCRLF\n",
        "caf\xC3\xA9 na\xC3\xAFve \xC3\x89l\xC3\xA8ve", // accents
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",         // CJK
        "emoji \xF0\x9F\x99\x82\xF0\x9F\x98\x80!",      // 4-byte codepoints
        "hair\xE2\x80\x8Aspace",                        // a codepoint that has a piece
        "<0x41> <unk> <s> </s>",                        // piece lookalikes
        std::string("nul\0byte", 8),
        "\xFF\xFE invalid \x80\x80\x80\x80\x80\x80 utf8 \xC3", // stray and truncated bytes
        " ",
        "x",
    };
    for (const auto& text : texts) {
        INFO("text: " << text);
        const ids_t ids = tok.encode(text);
        for (const auto id : ids)
            REQUIRE((id >= 0 && id < 512));
        CHECK(tok.decode(ids) == text);
        CHECK(tok.decode(tok.encode(text, true, true)) == text);
    }
}

TEST_CASE("llama2c_tokenizer: encode agrees with a naive reference on random text", "[tokenizer]") {
    const auto seed = Catch::rngSeed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const auto tok = tok512();
    const auto alphabet = printable_and_multibyte();
    for (int trial = 0; trial < 150; ++trial) {
        const std::string text = random_text(rng, alphabet, 40);
        INFO("text: " << text);
        const ids_t ids = tok.encode(text);
        REQUIRE(ids == naive_encode(tok, text, true));
        CHECK(tok.encode(text, false) == naive_encode(tok, text, false));
        CHECK(tok.decode(ids) == text);
    }
    // Arbitrary bytes (not UTF-8) exercise the codepoint grouping and the byte fallback.
    std::uniform_int_distribution<int> byte(0, 255);
    for (int trial = 0; trial < 100; ++trial) {
        std::string text(static_cast<std::size_t>(byte(rng) % 40), '\0');
        for (auto& c : text)
            c = static_cast<char>(byte(rng));
        const ids_t ids = tok.encode(text);
        REQUIRE(ids == naive_encode(tok, text, true));
        CHECK(tok.decode(ids) == text);
    }
}

TEST_CASE("llama2c_tokenizer: ties merge the leftmost pair and scores at -1e10 never merge",
          "[tokenizer]") {
    const auto tok = synthetic_tokenizer();
    REQUIRE(tok.vocab_size() == 271);
    // "aa" at -5 twice: the left pair merges first.
    CHECK(tok.encode("aaa", false) == ids_t{259, 262, 260});
    // "ab" and "ba" tie at -5: the left one wins, leaving "a" alone.
    CHECK(tok.encode("aba", false) == ids_t{259, 263, 260});
    // "aa" (-5) first, then "aab" (-4) from the merged piece.
    CHECK(tok.encode("aab", false) == ids_t{259, 266});
    // "bb" scores -3e10: run.c's search starts at -1e10, so it is never chosen.
    CHECK(tok.encode("bb", false) == ids_t{259, 261, 261});
    // A two-byte codepoint with a piece is one token; without one, its bytes fall back.
    CHECK(tok.encode("\xC3\xA9", false) == ids_t{259, 268});
    CHECK(tok.encode("\xC3\xBC", false) == ids_t{259, 3 + 0xC3, 3 + 0xBC});
    CHECK(tok.decode(tok.encode("ab ba \xC3\xBC")) == "ab ba \xC3\xBC");
    // Groups are a byte plus at most 3 continuation bytes, even when the run is longer or stray.
    CHECK(tok.encode("\xF0\x9F\x99\x82", false) == ids_t{259, 269});
    CHECK(tok.encode("\xF0\x9F\x99\x82\x80\x80\x80\x80\x80", false) ==
          ids_t{259, 269, 270, 3 + 0x80});
    CHECK(tok.encode("\x80\x80\x80\x80\x80\x80", false) == ids_t{259, 270, 3 + 0x80, 3 + 0x80});
    // "a" + 3 continuation bytes is a group without a piece, so all of it falls back to bytes.
    CHECK(tok.encode("a\x80\x80\x80\x80\x80\x80", false) ==
          ids_t{259, 3 + 'a', 131, 131, 131, 131, 131, 131});

    const auto seed = Catch::rngSeed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const std::vector<std::string> alphabet = {
        "a", "b", " ", "c", "\xC3\xA9", "\xC3\xBC", "\xF0\x9F\x99\x82", "\x80", "\xF0"};
    for (int trial = 0; trial < 400; ++trial) {
        const std::string text = random_text(rng, alphabet, 24);
        INFO("text: " << text);
        REQUIRE(tok.encode(text) == naive_encode(tok, text, true));
        CHECK(tok.decode(tok.encode(text)) == text);
    }
}

TEST_CASE("llama2c_tokenizer: long text encodes and round-trips", "[tokenizer]") {
    const auto tok = tok512();
    std::string text;
    while (text.size() < 200000)
        text +=
            "Once upon a time, there was a little girl named Lily. She loved to play outside in "
            "the park. One day, she saw a big, red ball. \xF0\x9F\x99\x82\n";
    const ids_t ids = tok.encode(text);
    CHECK(ids.size() < text.size() / 2);
    CHECK(tok.decode(ids) == text);
}

TEST_CASE("llama2c_tokenizer: copies own their vocabulary and const calls run concurrently",
          "[tokenizer]") {
    const std::string text = "Lily and Ben went to the park.";
    const ids_t expected = tok512().encode(text);
    std::optional<llama2c_tokenizer> copy;
    {
        const auto original = llama2c_tokenizer::load(tok512_path);
        copy = original;
    }
    CHECK(copy->encode(text) == expected);
    const llama2c_tokenizer moved = std::move(*copy);
    CHECK(moved.encode(text) == expected);

    ids_t from_thread;
    std::thread worker([&] {
        for (int i = 0; i < 200; ++i)
            from_thread = moved.encode(text);
    });
    ids_t here;
    for (int i = 0; i < 200; ++i)
        here = moved.encode(text);
    worker.join();
    CHECK(from_thread == expected);
    CHECK(here == expected);
}

TEST_CASE("llama2c_tokenizer: out-of-range ids throw tokenizer.302", "[tokenizer]") {
    const auto tok = tok512();
    REQUIRE_THROWS_AS(tok.decode({1, 403, 512}), actlens::error);
    CHECK_THAT(error_text([&] {
                   tok.decode({1, 403, 512});
               }),
               Contains("[actlens.tokenizer.302]") && Contains("ids[2] = 512") &&
                   Contains("vocab_size 512"));
    CHECK_THAT(error_text([&] { tok.decode({-1}); }),
               Contains("[actlens.tokenizer.302]") && Contains("-1"));
    CHECK_THAT(error_text([&] { tok.decode_piece(1, 600); }),
               Contains("[actlens.tokenizer.302]") && Contains("600"));
    CHECK_THAT(error_text([&] { tok.piece(-5); }),
               Contains("[actlens.tokenizer.302]") && Contains("-5"));
    CHECK_THAT(error_text([&] { tok.score(512); }),
               Contains("[actlens.tokenizer.302]") && Contains("512"));
    CHECK_THAT(error_text([&] { tok.decode_piece(1, std::numeric_limits<std::int32_t>::min()); }),
               Contains("[actlens.tokenizer.302]"));
}

TEST_CASE("llama2c_tokenizer: hostile files throw errors that name the file and field",
          "[tokenizer]") {
    const scratch_folder dir("tokenizer_llama2c");
    const auto load_error = [](const std::string& path, std::optional<std::size_t> vocab = {}) {
        REQUIRE_THROWS_AS(llama2c_tokenizer::load(path, vocab), actlens::error);
        return error_text([&] { llama2c_tokenizer::load(path, vocab); });
    };
    const std::string real = read_file(tok512_path);
    REQUIRE(real.size() == 6227);

    SECTION("the synthetic file itself is valid") {
        const auto path = dir.write("valid.bin", file_of(synthetic_llama2c_vocab()).bytes);
        CHECK(llama2c_tokenizer::load(path).vocab_size() == 271);
        CHECK(llama2c_tokenizer::load(path, 271).vocab_size() == 271);
    }
    SECTION("empty file") {
        const auto path = dir.write("empty.bin", "");
        CHECK_THAT(load_error(path),
                   Contains("[actlens.tokenizer.301]") && Contains(path) && Contains("empty"));
        CHECK_THAT(load_error(path, 512), Contains("[actlens.tokenizer.301]") && Contains(path));
    }
    SECTION("shorter than max_token_length") {
        const auto path = dir.write("short.bin", std::string("\x07\x00", 2));
        CHECK_THAT(load_error(path),
                   Contains("[actlens.io.202]") && Contains(path) && Contains("max_token_length"));
    }
    SECTION("non-positive max_token_length") {
        const auto path = dir.write("maxlen.bin", file_of(synthetic_llama2c_vocab(), -3).bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                         Contains("max_token_length") && Contains("-3"));
    }
    SECTION("truncated mid-record") {
        const auto path = dir.write("cut.bin", real.substr(0, 1001));
        const std::string given = load_error(path, 512);
        CHECK_THAT(given, Contains("[actlens.io.202]") && Contains(path) && Contains("truncated") &&
                              Contains("token"));
        CHECK_THAT(load_error(path),
                   Contains("[actlens.io.202]") && Contains(path) && Contains("inferred"));
        // Cut inside the 8-byte score/length header of the last record as well.
        const auto header_cut = dir.write("cut2.bin", real.substr(0, real.size() - 9));
        CHECK_THAT(load_error(header_cut), Contains("[actlens.io.202]") && Contains("token 511"));
    }
    SECTION("negative length") {
        auto f = file_of(base_vocab());
        f.put(-1.f).put(std::int32_t{-5}).bytes += "abcde";
        const auto path = dir.write("negative.bin", f.bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                         Contains("token 259") && Contains("'length' -5"));
    }
    SECTION("zero length") {
        auto f = file_of(base_vocab());
        f.put(-1.f).put(std::int32_t{0});
        const auto path = dir.write("zero.bin", f.bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains("'length' 0"));
    }
    SECTION("length larger than max_token_length") {
        auto f = file_of(base_vocab());
        f.record(-1.f, "abcdefgh"); // 8 > 7
        const auto path = dir.write("long.bin", f.bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                         Contains("'length' 8") && Contains("max_token_length 7"));
    }
    SECTION("huge length") {
        const std::int32_t huge = std::numeric_limits<std::int32_t>::max();
        auto f = file_of(base_vocab());
        f.put(-1.f).put(huge).bytes += "abc";
        const auto path = dir.write("huge.bin", f.bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains("2147483647"));
        // With a max_token_length that allows it, the length runs past the end of the file.
        auto g = file_of(base_vocab(), huge);
        g.put(-1.f).put(huge).bytes += "abc";
        const auto path2 = dir.write("huge2.bin", g.bytes);
        CHECK_THAT(load_error(path2),
                   Contains("[actlens.io.202]") && Contains(path2) && Contains("2147483647"));
        CHECK_THAT(load_error(path2, 260), Contains("[actlens.io.202]") && Contains("token 259"));
    }
    SECTION("non-finite scores") {
        auto vocab = synthetic_llama2c_vocab();
        vocab[262].first = std::numeric_limits<float>::quiet_NaN();
        const auto path = dir.write("nan.bin", file_of(vocab).bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                         Contains("token 262") && Contains("score") &&
                                         Contains("nan"));
        vocab[262].first = -std::numeric_limits<float>::infinity();
        const auto path2 = dir.write("inf.bin", file_of(vocab).bytes);
        CHECK_THAT(load_error(path2), Contains("[actlens.tokenizer.301]") && Contains("inf"));
    }
    SECTION("vocab_size that disagrees with the file") {
        const auto path = dir.write("tok512.bin", real);
        CHECK_THAT(load_error(path, 511), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                              Contains("more than vocab_size 511"));
        CHECK_THAT(load_error(path, 513), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                              Contains("holds 512 tokens but vocab_size is 513"));
        CHECK_THAT(load_error(path, std::numeric_limits<std::size_t>::max()),
                   Contains("[actlens.tokenizer.301]"));
        CHECK_THAT(load_error(path, 0), Contains("[actlens.tokenizer.301]"));
    }
    SECTION("too few tokens for byte fallback") {
        auto vocab = base_vocab();
        vocab.resize(100);
        const auto path = dir.write("small.bin", file_of(vocab).bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                         Contains("holds 100 tokens") && Contains("259"));
        const auto header_only = dir.write("header.bin", file_builder{}.put(std::int32_t{7}).bytes);
        CHECK_THAT(load_error(header_only),
                   Contains("[actlens.tokenizer.301]") && Contains("holds 0 tokens"));
    }
    SECTION("byte tokens out of place") {
        auto vocab = synthetic_llama2c_vocab();
        vocab[3 + 'A'].second = "A";
        const auto path = dir.write("bytes.bin", file_of(vocab).bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains(path) &&
                                         Contains("token 68") && Contains("<0x41>"));
    }
    SECTION("NUL byte inside a piece") {
        auto vocab = synthetic_llama2c_vocab();
        vocab.emplace_back(-9.f, std::string("a\0b", 3));
        const auto path = dir.write("nul.bin", file_of(vocab).bytes);
        CHECK_THAT(load_error(path), Contains("[actlens.tokenizer.301]") && Contains("token 271") &&
                                         Contains("\\x00"));
    }
    SECTION("missing file and directories") {
        const std::string missing = (dir.path / "does_not_exist.bin").string();
        CHECK_THAT(load_error(missing), Contains("[actlens.io.201]") && Contains(missing));
        CHECK_THAT(load_error(dir.path.string()),
                   Contains("[actlens.io.201]") && Contains(dir.path.string()));
    }
}

TEST_CASE("llama2c_tokenizer: from_pieces validates like a file", "[tokenizer]") {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    for (const auto& [score, piece] : synthetic_llama2c_vocab()) {
        pieces.push_back(piece);
        scores.push_back(score);
    }
    const auto tok = llama2c_tokenizer::from_pieces(pieces, scores);
    CHECK(tok.encode("aba", false) == ids_t{259, 263, 260});
    CHECK(tok.max_token_length() == 6);

    CHECK_THAT(error_text([&] { llama2c_tokenizer::from_pieces(pieces, {1.f}); }),
               Contains("[actlens.arg.101]"));
    auto bad = scores;
    bad[260] = std::numeric_limits<float>::infinity();
    CHECK_THAT(error_text([&] { llama2c_tokenizer::from_pieces(pieces, bad, "gguf vocab"); }),
               Contains("[actlens.tokenizer.301]") && Contains("gguf vocab") &&
                   Contains("token 260"));
    auto empty_piece = pieces;
    empty_piece[259] = "";
    CHECK_THAT(error_text([&] { llama2c_tokenizer::from_pieces(empty_piece, scores); }),
               Contains("[actlens.tokenizer.301]") && Contains("token 259"));
}

TEST_CASE("llama2c_tokenizer: corrupted and truncated copies of tok512.bin never crash",
          "[tokenizer]") {
    // Run under -fsanitize=address,undefined: every input must end in a tokenizer or
    // actlens::error.
    const std::string real = read_file(tok512_path);
    const auto as_bytes = [](const std::string& s) {
        return reinterpret_cast<const std::byte*>(s.data());
    };
    const auto exercise = [](const llama2c_tokenizer& tok) {
        const ids_t ids = tok.encode("Once upon a time \xF0\x9F\x99\x82 <0x41>", true, true);
        for (const auto id : ids)
            REQUIRE((id >= 0 && static_cast<std::size_t>(id) < tok.vocab_size()));
        (void)tok.decode(ids);
    };

    std::size_t loaded_given = 0;
    std::size_t loaded_inferred = 0;
    for (std::size_t size = 0; size <= real.size(); ++size) {
        try {
            exercise(llama2c_tokenizer::from_bytes(as_bytes(real), size, "cut", 512));
            ++loaded_given;
        } catch (const actlens::error&) {
        }
        try {
            exercise(llama2c_tokenizer::from_bytes(as_bytes(real), size, "cut"));
            ++loaded_inferred;
        } catch (const actlens::error&) {
        }
    }
    CHECK(loaded_given == 1);
    // Without the model's vocab_size, a cut at a record boundary looks like a smaller vocabulary:
    // every boundary after 259..512 records loads.
    CHECK(loaded_inferred == 512 - 259 + 1);

    const auto seed = Catch::rngSeed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> position(0, real.size() - 1);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int trial = 0; trial < 3000; ++trial) {
        std::string corrupt = real;
        for (int k = 0; k < 1 + trial % 4; ++k)
            corrupt[position(rng)] = static_cast<char>(byte(rng));
        try {
            exercise(llama2c_tokenizer::from_bytes(as_bytes(corrupt), corrupt.size(), "corrupt"));
        } catch (const actlens::error&) {
        }
    }
}
