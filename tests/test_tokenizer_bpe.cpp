// Tests of actlens/tokenizer/bpe.hpp: GPT-2's vocabulary against ids from the npm package
// gpt-3-encoder (tests/fixtures/gpt2_bpe, made by make_fixture.js), the file formats against each
// other, a naive reference of encoder.py's merge loop, hostile files, threads and random text.
#include <actlens/core/utf8.hpp>
#include <actlens/tokenizer/bpe.hpp>

#include "test_files.hpp"
#include "paths.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

using actlens::bpe_tokenizer;
using actlens::errc;
using Catch::Matchers::Contains;
using ids_t = std::vector<std::int32_t>;
using json = nlohmann::json;

namespace {

const std::string fixture_dir = actlens::test_paths::fixture("gpt2_bpe");
const std::string small_dir = fixture_dir + "/small";

bpe_tokenizer gpt2() {
    return bpe_tokenizer::load(fixture_dir + "/vocab.json", fixture_dir + "/merges.txt");
}

bpe_tokenizer small_tokenizer() {
    return bpe_tokenizer::load(small_dir + "/vocab.json", small_dir + "/merges.txt");
}

struct expected_case {
    std::string text;
    ids_t ids;       // GPT-2 (the original encoder's semantics)
    ids_t small_ids; // the vocabulary of small/
};

// expected.json: texts (gpt-3-encoder's ids) and whitespace_divergent (the original's ids).
std::vector<expected_case> expected_cases() {
    const json doc = json::parse(read_file(fixture_dir + "/expected.json"));
    std::vector<expected_case> out;
    for (const char* section : {"texts", "whitespace_divergent"})
        for (const auto& c : doc.at(section))
            out.push_back({c.at("text").get<std::string>(), c.at("ids").get<ids_t>(),
                           c.at("small_ids").get<ids_t>()});
    return out;
}

// GPT-2's byte-to-unicode table, written out again so the tests do not rely on the header's.
std::string byte_symbol(int b) {
    const auto printable = [](int c) {
        return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
    };
    int cp = b;
    if (!printable(b)) {
        cp = 256;
        for (int c = 0; c < b; ++c)
            cp += printable(c) ? 0 : 1;
    }
    std::string out;
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return out;
}

// The what() of the actlens::error `f` throws, after checking its code; "" (with a failure) if it
// throws none.
template <class F>
std::string error_of(errc code, F&& f) {
    try {
        f();
    } catch (const actlens::error& e) {
        CHECK(static_cast<int>(e.code()) == static_cast<int>(code));
        return e.what();
    }
    FAIL_CHECK("no actlens::error was thrown");
    return "";
}

// The 256 byte symbols with ids 0..255 in byte order, plus `extra` pieces from id 256 on.
json synthetic_vocab(const std::vector<std::string>& extra = {}) {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b)
        vocab[byte_symbol(b)] = b;
    for (std::size_t i = 0; i < extra.size(); ++i)
        vocab[extra[i]] = 256 + i;
    return vocab;
}

std::string merges_text(const std::vector<std::string>& lines) {
    std::string out = "#version: 0.2\n";
    for (const auto& l : lines)
        out += l + "\n";
    return out;
}

// A tokenizer.json as Hugging Face writes GPT-2's, around a vocabulary and merges.
json tokenizer_json(const json& vocab, const json& merges) {
    return json{{"version", "1.0"},
                {"added_tokens", json::array()},
                {"normalizer", nullptr},
                {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                {"post_processor", {{"type", "ByteLevel"}}},
                {"decoder", {{"type", "ByteLevel"}}},
                {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

// Deliberately naive reference of encoder.py's bpe(): symbols as strings, a rescan of every pair
// for the best rank, then every occurrence of that pair merged left to right, until none ranks.
struct naive_bpe {
    std::map<std::pair<std::string, std::string>, std::size_t> ranks;
    std::vector<std::pair<std::string, std::string>> by_rank;

    explicit naive_bpe(const std::string& merges_txt) {
        std::size_t pos = merges_txt.find('\n') + 1; // the "#version" line
        for (std::size_t rank = 0; pos < merges_txt.size(); ++rank) {
            const std::size_t end = merges_txt.find('\n', pos);
            const std::string line = merges_txt.substr(pos, end - pos);
            const std::size_t space = line.find(' ');
            by_rank.emplace_back(line.substr(0, space), line.substr(space + 1));
            ranks[by_rank.back()] = rank;
            pos = end + 1;
        }
    }

    ids_t encode(const bpe_tokenizer& tok, const std::string& text) const {
        ids_t ids;
        for (const std::string& word : tok.pre_tokenize(text)) {
            std::vector<std::string> symbols;
            for (const char c : word)
                symbols.push_back(byte_symbol(static_cast<unsigned char>(c)));
            for (;;) {
                std::size_t best = std::numeric_limits<std::size_t>::max();
                for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
                    const auto it = ranks.find({symbols[i], symbols[i + 1]});
                    if (it != ranks.end()) best = std::min(best, it->second);
                }
                if (best == std::numeric_limits<std::size_t>::max()) break;
                const auto& pair = by_rank[best];
                std::vector<std::string> merged;
                for (std::size_t i = 0; i < symbols.size();) {
                    if (i + 1 < symbols.size() && symbols[i] == pair.first &&
                        symbols[i + 1] == pair.second) {
                        merged.push_back(pair.first + pair.second);
                        i += 2;
                    } else {
                        merged.push_back(symbols[i++]);
                    }
                }
                symbols = std::move(merged);
            }
            for (const auto& s : symbols)
                ids.push_back(tok.find_piece(s).value_or(-1));
        }
        return ids;
    }
};

// Encoding random code points (inputs, not expected values) with the library's own encoder.
using actlens::utf8::append_utf8;

// Random valid UTF-8 that stresses the pattern: letters, digits, apostrophes and contractions,
// every kind of White_Space (and the look-alikes U+180E, U+FEFF, U+200B), combining marks, ZWJ
// emoji sequences, CJK, astral and unassigned code points.
std::string random_unicode(std::mt19937& rng, std::size_t max_chars) {
    static const std::vector<std::uint32_t> spaces = {
        0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x20,   0x20,   0x85,   0xA0,  0x1680,
        0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x180E, 0xFEFF, 0x200B};
    static const std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges = {
        {0x20, 0x7E},     {'a', 'z'},       {'A', 'Z'},         {'0', '9'},
        {0xA0, 0xFF},     {0x100, 0x24F},   {0x300, 0x36F},     {0x370, 0x3FF},
        {0x400, 0x4FF},   {0x590, 0x6FF},   {0x900, 0x97F},     {0x3040, 0x30FF},
        {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1FAFF}, {0x1D400, 0x1D7FF},
        {0xE000, 0xF8FF}, {0x0, 0x10FFFF}};
    static const std::vector<std::string> words = {
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "\xE2\x80\x8D", "\xEF\xB8\x8F"};
    std::uniform_int_distribution<std::size_t> length(0, max_chars);
    std::uniform_int_distribution<int> kind(0, 9);
    std::string out;
    const std::size_t n = length(rng);
    for (std::size_t i = 0; i < n; ++i) {
        const int k = kind(rng);
        if (k <= 2) {
            append_utf8(
                out, spaces[std::uniform_int_distribution<std::size_t>(0, spaces.size() - 1)(rng)]);
        } else if (k == 3) {
            out += words[std::uniform_int_distribution<std::size_t>(0, words.size() - 1)(rng)];
        } else {
            const auto [lo, hi] =
                ranges[std::uniform_int_distribution<std::size_t>(0, ranges.size() - 1)(rng)];
            std::uint32_t cp = std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; // surrogates are not characters
            append_utf8(out, cp);
        }
    }
    return out;
}

std::string join(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts)
        out += p;
    return out;
}

} // namespace

TEST_CASE("bpe_tokenizer: loads GPT-2's vocab.json and merges.txt", "[tokenizer][bpe]") {
    const auto tok = gpt2();
    CHECK(tok.vocab_size() == 50257);
    CHECK(tok.merge_count() == 50000);
    CHECK(tok.source() == fixture_dir + "/vocab.json");
    REQUIRE(tok.eos_id());
    CHECK(*tok.eos_id() == 50256);
    CHECK(tok.piece(50256) == "<|endoftext|>");
    CHECK(tok.token_bytes(50256) == "<|endoftext|>");
    CHECK(tok.piece(0) == "!");
    CHECK(tok.piece(220) == "\xC4\xA0"); // "Ġ", the byte ' '
    CHECK(tok.token_bytes(220) == " ");
    CHECK(tok.piece(256) == "\xC4\xA0t"); // the first merge, "Ġ t"
    CHECK(tok.token_bytes(262) == " the");
    CHECK(tok.find_piece("\xC4\xA0the") == 262);
    CHECK(tok.find_piece("Hello") == 15496);
    CHECK_FALSE(tok.find_piece(" the")); // pieces are in byte-level form
    CHECK_FALSE(tok.find_piece(""));
    for (int b = 0; b < 256; ++b) {
        const auto id = tok.find_piece(byte_symbol(b));
        REQUIRE(id);
        CHECK(tok.token_bytes(*id) == std::string(1, static_cast<char>(b)));
    }
}

TEST_CASE("bpe_tokenizer: ids equal gpt-3-encoder's on the whole corpus", "[tokenizer][bpe]") {
    const auto tok = gpt2();
    const auto small = small_tokenizer();
    const auto cases = expected_cases();
    REQUIRE(cases.size() > 150);
    for (const auto& c : cases) {
        INFO("text: " << c.text);
        CHECK(tok.encode(c.text) == c.ids);
        CHECK(small.encode(c.text) == c.small_ids);
    }
}

TEST_CASE("bpe_tokenizer: the original's White_Space, not JavaScript's \\s nor PCRE2's",
          "[tokenizer][bpe]") {
    const auto tok = gpt2();
    // U+0085 (NEL) is White_Space: alone after a space run it joins the run.
    CHECK(tok.pre_tokenize("  \xC2\x85") == std::vector<std::string>{"  \xC2\x85"});
    CHECK(tok.pre_tokenize("!\xC2\x85?") == std::vector<std::string>{"!", "\xC2\x85", "?"});
    // U+FEFF (BOM) is not: it groups with punctuation.
    CHECK(tok.pre_tokenize("!\xEF\xBB\xBF?") == std::vector<std::string>{"!\xEF\xBB\xBF?"});
    // U+180E (Mongolian vowel separator) is not White_Space since Unicode 6.3 (PCRE2 10.42's \s
    // still matches it).
    CHECK(tok.pre_tokenize("!\xE1\xA0\x8E?") == std::vector<std::string>{"!\xE1\xA0\x8E?"});
    CHECK(tok.pre_tokenize("  \xE1\xA0\x8E") == std::vector<std::string>{" ", " \xE1\xA0\x8E"});
    // The one corpus text where gpt-3-encoder's ids differ from the original's.
    CHECK(tok.encode("x  \xEF\xBB\xBFy") == ids_t{87, 220, 27332, 119, 123, 88});
}

TEST_CASE("bpe_tokenizer: decode round-trips the exact bytes", "[tokenizer][bpe]") {
    const auto tok = gpt2();
    for (const auto& c : expected_cases()) {
        INFO("text: " << c.text);
        CHECK(tok.decode(c.ids) == c.text);
        CHECK(tok.decode(tok.encode(c.text)) == c.text);
        CHECK(join(tok.pre_tokenize(c.text)) == c.text);
    }
    CHECK(tok.decode({}).empty());
    CHECK(tok.decode({50256}) == "<|endoftext|>");
}

TEST_CASE("bpe_tokenizer: vocab.json + merges.txt and tokenizer.json give identical ids",
          "[tokenizer][bpe]") {
    const auto cases = expected_cases();

    SECTION("the small vocabulary, merges as strings and as arrays") {
        const auto from_txt = small_tokenizer();
        const auto from_json = bpe_tokenizer::load_tokenizer_json(small_dir + "/tokenizer.json");
        const auto from_arrays =
            bpe_tokenizer::load_tokenizer_json(small_dir + "/tokenizer_array_merges.json");
        CHECK(from_json.vocab_size() == from_txt.vocab_size());
        CHECK(from_arrays.vocab_size() == from_txt.vocab_size());
        CHECK(from_json.merge_count() == 1000);
        CHECK(from_json.eos_id() == from_txt.eos_id());
        CHECK(from_json.eos_id() == 1256);
        for (const auto& c : cases) {
            INFO("text: " << c.text);
            const ids_t ids = from_txt.encode(c.text);
            CHECK(ids == c.small_ids);
            CHECK(from_json.encode(c.text) == ids);
            CHECK(from_arrays.encode(c.text) == ids);
        }
    }

    SECTION("GPT-2 in full, written as tokenizer.json with <|endoftext|> as an added token") {
        const json vocab = json::parse(read_file(fixture_dir + "/vocab.json"));
        json merges = json::array();
        const std::string txt = read_file(fixture_dir + "/merges.txt");
        for (std::size_t pos = txt.find('\n') + 1; pos < txt.size();) {
            const std::size_t end = txt.find('\n', pos);
            const std::string line = txt.substr(pos, end - pos);
            merges.push_back({line.substr(0, line.find(' ')), line.substr(line.find(' ') + 1)});
            pos = end + 1;
        }
        json doc = tokenizer_json(vocab, merges);
        doc["added_tokens"] =
            json::array({{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}});
        const scratch_folder dir("tokenizer_bpe");
        dir.write("tokenizer.json", doc.dump());
        const auto tok = actlens::load_bpe_tokenizer(dir.path.string());
        CHECK(tok.vocab_size() == 50257);
        CHECK(tok.eos_id() == 50256);
        for (const auto& c : cases) {
            INFO("text: " << c.text);
            CHECK(tok.encode(c.text) == c.ids);
        }
    }
}

TEST_CASE("bpe_tokenizer: load_bpe_tokenizer recognises both layouts", "[tokenizer][bpe]") {
    const std::string text = "Hello world, it's 2024!";
    const ids_t gpt2_ids = gpt2().encode(text);
    // A folder with vocab.json + merges.txt only.
    CHECK(actlens::load_bpe_tokenizer(fixture_dir).encode(text) == gpt2_ids);
    // small/ has both layouts: tokenizer.json wins, and gives the same ids.
    const auto small = actlens::load_bpe_tokenizer(small_dir);
    CHECK(small.source() == small_dir + "/tokenizer.json");
    CHECK(small.encode(text) == small_tokenizer().encode(text));
    // A tokenizer.json under any name.
    CHECK(actlens::load_bpe_tokenizer(small_dir + "/tokenizer_array_merges.json").encode(text) ==
          small.encode(text));

    const scratch_folder empty("tokenizer_bpe_empty");
    CHECK_THAT(error_of(errc::file_open, [&] { actlens::load_bpe_tokenizer(empty.path.string()); }),
               Contains("neither tokenizer.json nor vocab.json + merges.txt"));
    CHECK_THAT(error_of(errc::file_open,
                        [&] { actlens::load_bpe_tokenizer(fixture_dir + "/no_such_file"); }),
               Contains("no_such_file"));
    CHECK_THAT(error_of(errc::file_open,
                        [&] { bpe_tokenizer::load(fixture_dir + "/vocab.json", "/nonexistent"); }),
               Contains("/nonexistent"));
}

TEST_CASE("bpe_tokenizer: out-of-range ids throw tokenizer.302", "[tokenizer][bpe]") {
    const auto tok = gpt2();
    CHECK_THAT(error_of(errc::token_out_of_range,
                        [&] {
                            tok.decode({15496, 50257});
                        }),
               Contains("ids[1] = 50257") && Contains("vocab_size 50257"));
    CHECK_THAT(error_of(errc::token_out_of_range, [&] { tok.decode({-1}); }),
               Contains("ids[0] = -1"));
    CHECK_THAT(error_of(errc::token_out_of_range, [&] { tok.piece(50257); }), Contains("50257"));
    CHECK_THAT(error_of(errc::token_out_of_range, [&] { tok.token_bytes(-5); }), Contains("-5"));
}

TEST_CASE("bpe_tokenizer: bytes that are not UTF-8 are pre-tokens of their own",
          "[tokenizer][bpe]") {
    const auto tok = gpt2();
    using v = std::vector<std::string>;
    CHECK(tok.pre_tokenize("abc\xFF"
                           "def") == v{"abc", "\xFF", "def"});
    CHECK(tok.pre_tokenize(" \xFF") == v{" ", "\xFF"});
    CHECK(tok.pre_tokenize("x \xFF y") == v{"x", " ", "\xFF", " y"});
    CHECK(tok.pre_tokenize("a\xE4\xB8"
                           "b") == v{"a", "\xE4\xB8", "b"}); // a truncated 3-byte character
    CHECK(tok.pre_tokenize("\xED\xA0\x80x") == v{"\xED\xA0\x80", "x"}); // an encoded surrogate
    CHECK(tok.pre_tokenize("\xC0\xAF"
                           "a") == v{"\xC0\xAF", "a"});                         // an overlong '/'
    CHECK(tok.pre_tokenize("\xF4\x90\x80\x80!") == v{"\xF4\x90\x80\x80", "!"}); // past U+10FFFF
    CHECK(tok.pre_tokenize("hello\x80\x80 world") == v{"hello", "\x80\x80", " world"});
    CHECK(tok.pre_tokenize("'\xFF"
                           "s") == v{"'", "\xFF", "s"});
    CHECK(tok.encode("\xE4\xB8") == ids_t{10310}); // merged like any pre-token
    const std::string nul("a\0b", 3);
    CHECK(tok.pre_tokenize(nul) == v{"a", std::string(1, '\0'), "b"});
    CHECK(tok.decode(tok.encode(nul)) == nul);
}

TEST_CASE("bpe_tokenizer: merges apply in rounds, as encoder.py does", "[tokenizer][bpe]") {
    const scratch_folder dir("tokenizer_bpe");
    const auto load = [&](const json& vocab, const std::vector<std::string>& merges) {
        return bpe_tokenizer::load(dir.write("vocab.json", vocab.dump()),
                                   dir.write("merges.txt", merges_text(merges)));
    };
    const auto id = [](char c) { return static_cast<std::int32_t>(static_cast<unsigned char>(c)); };

    SECTION("every occurrence of the best pair before any pair those merges form") {
        // "xy x" ranks before "x y" but uses its result: encoder.py merges both "x y" of "xyxy"
        // in one round, then finds no "xy x"; a plain heap would take "xy x" in between.
        const auto tok = load(synthetic_vocab({"xy", "xyx"}), {"xy x", "x y"});
        CHECK(tok.encode("xyxy") == ids_t{256, 256});
        CHECK(tok.encode("xyx") == ids_t{257});
    }
    SECTION("non-overlapping occurrences, left to right") {
        const auto tok = load(synthetic_vocab({"aa", "aaaa"}), {"a a", "aa aa"});
        CHECK(tok.encode("aaa") == ids_t{256, id('a')});
        CHECK(tok.encode("aaaaa") == ids_t{257, id('a')});
        CHECK(tok.encode("aaaaaa") == ids_t{257, 256});
    }
    SECTION("a pair listed twice keeps its last rank") {
        const auto tok = load(synthetic_vocab({"ab", "bc"}), {"a b", "b c", "a b"});
        CHECK(tok.merge_count() == 2);
        CHECK(tok.encode("abc") == ids_t{id('a'), 257});
    }
}

TEST_CASE("bpe_tokenizer: encode agrees with a naive reference on random text",
          "[tokenizer][bpe]") {
    const auto seed = Catch::rngSeed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const auto tok = gpt2();
    const naive_bpe naive(read_file(fixture_dir + "/merges.txt"));
    for (int i = 0; i < 150; ++i) {
        const std::string text = random_unicode(rng, 40);
        INFO("text: " << text);
        CHECK(tok.encode(text) == naive.encode(tok, text));
    }
    // Long ASCII words exercise many rounds.
    std::uniform_int_distribution<int> letter('a', 'z');
    for (int i = 0; i < 10; ++i) {
        std::string word = " ";
        for (int k = 0; k < 120; ++k)
            word += static_cast<char>(letter(rng));
        INFO("word: " << word);
        CHECK(tok.encode(word) == naive.encode(tok, word));
    }
}

TEST_CASE("bpe_tokenizer: random strings round-trip", "[tokenizer][bpe]") {
    const auto seed = Catch::rngSeed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const auto tok = gpt2();
    const auto check = [&](const std::string& text) {
        const ids_t ids = tok.encode(text);
        for (const auto id : ids)
            REQUIRE((id >= 0 && static_cast<std::size_t>(id) < tok.vocab_size()));
        REQUIRE(tok.decode(ids) == text);
        REQUIRE(join(tok.pre_tokenize(text)) == text);
    };
    for (int i = 0; i < 400; ++i) {
        const std::string text = random_unicode(rng, 80);
        INFO("text: " << text);
        check(text);
    }
    // Arbitrary bytes, mostly not UTF-8.
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> length(0, 64);
    for (int i = 0; i < 400; ++i) {
        std::string text;
        for (int n = length(rng); n > 0; --n)
            text += static_cast<char>(byte(rng));
        check(text);
    }
}

TEST_CASE("bpe_tokenizer: long inputs encode in n log n", "[tokenizer][bpe]") {
    const auto tok = gpt2();
    std::mt19937 rng(Catch::rngSeed());
    std::uniform_int_distribution<int> letter('a', 'z');
    std::string word; // one pre-token of 200000 letters
    for (int i = 0; i < 200000; ++i)
        word += static_cast<char>(letter(rng));
    std::string smiles;
    for (int i = 0; i < 50000; ++i)
        smiles += "\xF0\x9F\x98\x80";
    std::string corpus; // about 1 MB of many short pre-tokens
    const auto cases = expected_cases();
    while (corpus.size() < 1000000)
        for (const auto& c : cases)
            corpus += c.text + "\xFF\n";
    const std::vector<std::string> texts = {corpus,
                                            word,
                                            std::string(200000, 'a'),
                                            std::string(500000, ' ') + "x",
                                            std::string(300000, '7'),
                                            smiles,
                                            std::string(200000, '!')};
    for (const auto& text : texts) {
        const auto t0 = std::chrono::steady_clock::now();
        const ids_t ids = tok.encode(text);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        INFO(text.size() << " bytes starting " << text.substr(0, 8) << ": " << ids.size()
                         << " ids in " << seconds << " s");
        CHECK(tok.decode(ids) == text);
        // Quadratic merging would take minutes here; generous for sanitizer builds.
        CHECK(seconds < 20.0);
    }
}

TEST_CASE("bpe_tokenizer: copies share the vocabulary and const calls run concurrently",
          "[tokenizer][bpe]") {
    const auto cases = expected_cases();
    const bpe_tokenizer tok = gpt2();
    const bpe_tokenizer copy = tok;
    bpe_tokenizer from = gpt2();
    const bpe_tokenizer to = std::move(from);
    // Moving shares the vocabulary like copying: the moved-from tokenizer stays usable.
    CHECK(from.encode(cases[1].text) == cases[1].ids); // NOLINT(bugprone-use-after-move)
    CHECK(to.encode(cases[1].text) == cases[1].ids);
    std::vector<ids_t> a(cases.size()), b(cases.size());
    std::vector<std::string> decoded(cases.size());
    std::thread first([&] {
        for (int round = 0; round < 3; ++round)
            for (std::size_t i = 0; i < cases.size(); ++i)
                a[i] = tok.encode(cases[i].text);
    });
    std::thread second([&] {
        for (int round = 0; round < 3; ++round)
            for (std::size_t i = cases.size(); i-- > 0;) {
                b[i] = tok.encode(cases[i].text);
                decoded[i] = copy.decode(b[i]);
            }
    });
    first.join();
    second.join();
    for (std::size_t i = 0; i < cases.size(); ++i) {
        INFO("text: " << cases[i].text);
        CHECK(a[i] == cases[i].ids);
        CHECK(b[i] == cases[i].ids);
        CHECK(decoded[i] == cases[i].text);
    }
}

TEST_CASE("bpe_tokenizer: tokenizer.json settings", "[tokenizer][bpe]") {
    const scratch_folder dir("tokenizer_bpe");
    const auto load = [&](const json& doc) {
        return bpe_tokenizer::load_tokenizer_json(dir.write("tokenizer.json", doc.dump()));
    };
    const json vocab = synthetic_vocab({"\xC4\xA0h", "he", "\xC4\xA0he", "hello"});
    const json merges = json::array({"\xC4\xA0 h", "h e", "\xC4\xA0h e"});
    const ids_t space_he = {258};

    SECTION("GPT-2's settings") {
        const auto tok = load(tokenizer_json(vocab, merges));
        CHECK(tok.encode(" he") == space_he);
        CHECK(tok.encode("he he") == ids_t{257, 258});
        CHECK_FALSE(tok.eos_id());
    }
    SECTION("add_prefix_space") {
        json doc = tokenizer_json(vocab, merges);
        doc["pre_tokenizer"]["add_prefix_space"] = true;
        const auto tok = load(doc);
        CHECK(tok.encode("he") == space_he);
        CHECK(tok.encode(" he") == space_he);
        CHECK(tok.pre_tokenize("he") == std::vector<std::string>{" he"});
        CHECK(tok.encode("").empty());
    }
    SECTION("use_regex false keeps the text whole") {
        json doc = tokenizer_json(vocab, merges);
        doc["pre_tokenizer"]["use_regex"] = false;
        const auto tok = load(doc);
        CHECK(tok.pre_tokenize("he he!") == std::vector<std::string>{"he he!"});
        CHECK(tok.encode("he he") == ids_t{257, 258});
    }
    SECTION("ignore_merges takes a whole pre-token that is a piece") {
        json doc = tokenizer_json(vocab, merges);
        CHECK(load(doc).encode("hello") == ids_t{257, 'l', 'l', 'o'}); // "he", then byte ids
        doc["model"]["ignore_merges"] = true;
        CHECK(load(doc).encode("hello") == ids_t{259});
    }
    SECTION("added tokens extend the vocabulary") {
        json doc = tokenizer_json(vocab, merges);
        doc["added_tokens"] =
            json::array({{{"id", 260}, {"content", "<|endoftext|>"}, {"special", true}},
                         {{"id", 261},
                          {"content", "<\xEF\xBD\x9C"
                                      "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"}}});
        const auto tok = load(doc);
        CHECK(tok.vocab_size() == 262);
        CHECK(tok.eos_id() == 260);
        // Not byte-level pieces: decoded as their own text.
        CHECK(tok.decode({261, 260}) ==
              "<\xEF\xBD\x9C"
              "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C><|endoftext|>");
        // Not recognised inside text.
        CHECK(tok.encode("<|endoftext|>").size() > 1);
    }
}

TEST_CASE("bpe_tokenizer: hostile vocab.json and merges.txt throw tokenizer.301 naming the "
          "file and entry",
          "[tokenizer][bpe]") {
    const scratch_folder dir("tokenizer_bpe");
    const std::string good_merges = merges_text({"a b"});
    const json good_vocab = synthetic_vocab({"ab"});
    const auto load = [&](const std::string& vocab, const std::string& merges) {
        return bpe_tokenizer::load(dir.write("vocab.json", vocab), dir.write("merges.txt", merges));
    };
    const auto vocab_error = [&](const std::string& vocab) {
        return error_of(errc::tokenizer_file, [&] { load(vocab, good_merges); });
    };
    const auto merges_error = [&](const std::string& merges) {
        return error_of(errc::tokenizer_file, [&] { load(good_vocab.dump(), merges); });
    };
    REQUIRE(load(good_vocab.dump(), good_merges).encode("ab") == ids_t{256});

    CHECK_THAT(vocab_error(""), Contains("vocab.json") && Contains("is empty"));
    CHECK_THAT(vocab_error("not json"), Contains("vocab.json") && Contains("not valid JSON"));
    const std::string real_vocab = read_file(fixture_dir + "/vocab.json");
    CHECK_THAT(vocab_error(real_vocab.substr(0, real_vocab.size() / 2)),
               Contains("vocab.json") && Contains("not valid JSON"));
    CHECK_THAT(vocab_error("[1, 2, 3]"), Contains("must be a JSON object") && Contains("array"));
    // Refused before parsing: nlohmann::json's destructor would recurse 100,000 levels deep.
    CHECK_THAT(vocab_error(std::string(100000, '[') + std::string(100000, ']')),
               Contains("vocab.json") && Contains("JSON nests deeper than 128 levels"));
    CHECK_THAT(vocab_error("{\"a\": \"\xFF\"}"), Contains("not valid JSON"));
    {
        json v = good_vocab;
        v["ab"] = 1.5;
        CHECK_THAT(vocab_error(v.dump()), Contains("vocab.json") && Contains("entry \"ab\"") &&
                                              Contains("not an integer"));
        v["ab"] = "256";
        CHECK_THAT(vocab_error(v.dump()), Contains("entry \"ab\"") && Contains("not an integer"));
        v["ab"] = -1;
        CHECK_THAT(vocab_error(v.dump()), Contains("entry \"ab\" has id -1, out of range"));
        v["ab"] = 5000;
        CHECK_THAT(vocab_error(v.dump()),
                   Contains("entry \"ab\" has id 5000, out of range: 257 tokens have ids 0..256"));
        v["ab"] = std::numeric_limits<std::uint64_t>::max();
        CHECK_THAT(vocab_error(v.dump()), Contains("entry \"ab\"") && Contains("out of range"));
        v["ab"] = 255;
        CHECK_THAT(vocab_error(v.dump()), Contains("both have id 255") && Contains("\"ab\""));
    }
    {
        json v = synthetic_vocab({"ab"});
        v.erase(byte_symbol(0x41)); // 'A'
        v["ab"] = 0x41;
        CHECK_THAT(vocab_error(v.dump()), Contains("no token for byte 0x41"));
    }

    CHECK_THAT(merges_error(""), Contains("merges.txt") && Contains("is empty"));
    CHECK_THAT(merges_error(merges_text({"a b", "ab"})),
               Contains("merges.txt") && Contains("line 3") && Contains("\"ab\""));
    CHECK_THAT(merges_error(merges_text({"a b c"})), Contains("line 2"));
    CHECK_THAT(merges_error(merges_text({"a  b"})), Contains("line 2"));
    CHECK_THAT(merges_error(merges_text({" a"})), Contains("line 2"));
    CHECK_THAT(merges_error(merges_text({"a b", "ab q"})),
               Contains("line 3") && Contains("makes \"abq\", which is not in the vocabulary"));
    CHECK_THAT(merges_error(merges_text({"a zz"})),
               Contains("line 2") && Contains("piece \"zz\", which is not in the vocabulary"));
    CHECK_THAT(merges_error(merges_text({"\xFF b"})), Contains("\"\\xFF\""));
    // "#version" is only skipped on the first line.
    CHECK_THAT(merges_error("a b\n#version: 0.2\n"), Contains("line 2"));
    // Blank lines and CRLF line ends are accepted, and the version line is optional.
    CHECK(load(good_vocab.dump(), "a b\r\n\r\n").merge_count() == 1);

    // GPT-2's own merges.txt cut inside a line, before the space.
    const std::string real_merges = read_file(fixture_dir + "/merges.txt");
    std::size_t line_start = 0;
    for (int line = 1; line < 100; ++line)
        line_start = real_merges.find('\n', line_start) + 1;
    const std::string cut = real_merges.substr(0, real_merges.find(' ', line_start));
    CHECK_THAT(error_of(errc::tokenizer_file,
                        [&] {
                            bpe_tokenizer::load(fixture_dir + "/vocab.json",
                                                dir.write("merges.txt", cut));
                        }),
               Contains("merges.txt") && Contains("line 100"));
}

TEST_CASE("bpe_tokenizer: hostile tokenizer.json throws tokenizer.301 naming the file and field",
          "[tokenizer][bpe]") {
    const scratch_folder dir("tokenizer_bpe");
    const json vocab = synthetic_vocab({"ab"});
    const json good = tokenizer_json(vocab, json::array({"a b"}));
    const auto error = [&](const json& doc) {
        const std::string path = dir.write("tokenizer.json", doc.dump());
        return error_of(errc::tokenizer_file, [&] { bpe_tokenizer::load_tokenizer_json(path); });
    };
    REQUIRE(bpe_tokenizer::from_tokenizer_json(good.dump()).encode("ab") == ids_t{256});

    const std::string path = dir.write("tokenizer.json", "");
    CHECK_THAT(error_of(errc::tokenizer_file, [&] { bpe_tokenizer::load_tokenizer_json(path); }),
               Contains("tokenizer.json") && Contains("is empty"));
    CHECK_THAT(error(json::array()), Contains("must hold a JSON object"));
    CHECK_THAT(error(json::object()), Contains("has no \"model\""));

    const auto with = [&](const std::string& pointer, const json& value) {
        json doc = good;
        doc[json::json_pointer(pointer)] = value;
        return doc;
    };
    const auto without = [&](const std::string& parent, const std::string& key) {
        json doc = good;
        doc[json::json_pointer(parent)].erase(key);
        return doc;
    };
    CHECK_THAT(error(with("/model/type", "WordPiece")),
               Contains("tokenizer.json") && Contains("model.type is \"WordPiece\""));
    CHECK_THAT(error(with("/model/type", "Unigram")), Contains("only \"BPE\""));
    CHECK_THAT(error(without("/model", "vocab")), Contains("has no model.vocab"));
    CHECK_THAT(error(without("/model", "merges")), Contains("has no model.merges"));
    CHECK_THAT(error(with("/model/vocab", json::array())), Contains("model.vocab must be"));
    CHECK_THAT(error(with("/model/vocab/ab", 2.5)),
               Contains("model.vocab entry \"ab\"") && Contains("not an integer"));
    CHECK_THAT(error(with("/model/vocab/ab", 300)),
               Contains("model.vocab entry \"ab\" has id 300"));
    CHECK_THAT(error(with("/model/merges", "a b")), Contains("model.merges must be an array"));
    CHECK_THAT(error(with("/model/merges", json::array({"a b", 7}))),
               Contains("model.merges[1] is a number"));
    CHECK_THAT(error(with("/model/merges", json::array({json::array({"a", "b", "c"})}))),
               Contains("model.merges[0]"));
    CHECK_THAT(error(with("/model/merges", json::array({"a b", "ab"}))),
               Contains("model.merges[1] is \"ab\""));
    CHECK_THAT(error(with("/model/merges", json::array({json::array({"a", "zz"})}))),
               Contains("model.merges[0]") && Contains("\"zz\", which is not in the vocabulary"));
    CHECK_THAT(error(with("/model/dropout", 0.1)), Contains("model.dropout"));
    CHECK(bpe_tokenizer::from_tokenizer_json(with("/model/dropout", 0).dump()).vocab_size() == 257);
    CHECK_THAT(error(with("/model/continuing_subword_prefix", "##")),
               Contains("model.continuing_subword_prefix is \"##\""));
    CHECK_THAT(error(with("/model/end_of_word_suffix", "</w>")),
               Contains("model.end_of_word_suffix"));
    CHECK_THAT(error(with("/model/ignore_merges", "yes")),
               Contains("model.ignore_merges must be true or false"));
    CHECK_THAT(error(with("/normalizer", {{"type", "NFC"}})),
               Contains("normalizer.type is \"NFC\""));
    CHECK_THAT(error(with("/pre_tokenizer", {{"type", "Metaspace"}})),
               Contains("pre_tokenizer.type is \"Metaspace\""));
    CHECK_THAT(error(with("/pre_tokenizer", nullptr)), Contains("pre_tokenizer.type is \"null\""));
    CHECK_THAT(error(with("/pre_tokenizer", json::object())), Contains("pre_tokenizer has no"));
    CHECK_THAT(error(with("/pre_tokenizer/add_prefix_space", 1)),
               Contains("pre_tokenizer.add_prefix_space must be true or false"));
    CHECK_THAT(error(with("/decoder", {{"type", "WordPiece"}})),
               Contains("decoder.type is \"WordPiece\""));
    CHECK_THAT(error(with("/added_tokens", json::object())),
               Contains("added_tokens must be an array"));
    CHECK_THAT(error(with("/added_tokens", json::array({{{"content", "<x>"}}}))),
               Contains("added_tokens[0] must be an object"));
    CHECK_THAT(error(with("/added_tokens", json::array({{{"id", 257}, {"content", 5}}}))),
               Contains("added_tokens[0]"));
    CHECK_THAT(error(with("/added_tokens", json::array({{{"id", 7}, {"content", "<x>"}}}))),
               Contains("both have id 7") && Contains("added_tokens[0] \"<x>\""));
    CHECK_THAT(error(with("/added_tokens", json::array({{{"id", 300}, {"content", "<x>"}}}))),
               Contains("added_tokens[0] \"<x>\" has id 300, out of range"));
    CHECK_THAT(error(with("/added_tokens", json::array({{{"id", 3}, {"content", "ab"}}}))),
               Contains("added_tokens[0] \"ab\" has id 3, but model.vocab gives it id 256"));
    CHECK_THAT(error(with("/added_tokens", json::array({{{"id", "x"}, {"content", "<x>"}}}))),
               Contains("added_tokens[0]") && Contains("not an integer"));
}

TEST_CASE("bpe_tokenizer: corrupted copies of the small tokenizer.json never crash",
          "[tokenizer][bpe]") {
    const auto seed = Catch::rngSeed();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    const std::string original = read_file(small_dir + "/tokenizer_array_merges.json");
    std::uniform_int_distribution<std::size_t> position(0, original.size() - 1);
    std::uniform_int_distribution<int> byte(0, 255);
    int loaded = 0, rejected = 0;
    for (int i = 0; i < 60; ++i) {
        std::string bytes = original;
        if (i % 3 == 0) {
            bytes.resize(position(rng)); // truncated
        } else {
            for (int k = 0; k < 1 + i % 4; ++k)
                bytes[position(rng)] = static_cast<char>(byte(rng));
        }
        try {
            const auto tok = bpe_tokenizer::from_tokenizer_json(bytes, "corrupted");
            const ids_t ids = tok.encode("Hello world, it's 2024!");
            for (const auto id : ids)
                CHECK((id >= 0 && static_cast<std::size_t>(id) < tok.vocab_size()));
            ++loaded;
        } catch (const actlens::error& e) {
            CHECK_THAT(std::string(e.what()), Contains("corrupted"));
            ++rejected;
        }
    }
    CHECK(loaded + rejected == 60);
    CHECK(rejected > 0);
}
