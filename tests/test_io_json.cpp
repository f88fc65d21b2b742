// Tests of actlens/io/json.hpp: the reader against nlohmann::json as a peer implementation (accept or
// refuse, and the values), the nesting bound, the writer's round trips, and bounded error messages.
#include <catch2/catch.hpp>

#include <actlens/io/json.hpp>

#include <nlohmann/json.hpp>

#include "json_peer.hpp"
#include "test_helpers.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace io_json = actlens::io;
using actlens::errc;
using io_json::json_value;

std::string json_nested(std::size_t levels, char open, char close) {
    return std::string(levels, open) + std::string(levels, close);
}

using actlens::test_json_peer::same_as_peer;

bool json_peer_accepts(const std::string& text) { return nlohmann::json::accept(text); }

} // namespace

TEST_CASE("json: the reader accepts and refuses what nlohmann does, with the same values", "[io][json]") {
    const std::vector<std::string> documents = {
        // Scalars and whitespace.
        "null", "true", "false", " \t\r\n 1 \n", "\"\"", "[]", "{}", " [ ] ", "{ \"a\" : [ 1 , 2 ] }",
        // Numbers at the edges of int64, uint64 and double.
        "0", "-0", "1", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
        "0.0", "-0.0", "1.5", "-1.5e3", "1E3", "1e+3", "1e-3", "2.5E-3", "1e308", "1.7976931348623157e308",
        "4.9e-324", "2.2250738585072014e-308", "1e-400", "-1e-400", "1e400", "-1e400", "0e999999", "1e309",
        "0.001e311", "10e-330", "1" + std::string(400, '0'), "-" + std::string(400, '9') + ".5", "0." + std::string(400, '0') + "1",
        "0.1", "3.141592653589793", "100000000000000000000000.0", "1.0000000000000002",
        // Numbers that are not JSON.
        "01", "-01", "+1", ".5", "5.", "1e", "1e+", "-", "--1", "1.e3", "0x10", "NaN", "Infinity", "-Infinity",
        "1 2", "1,",
        // Escapes, surrogates, UTF-8.
        R"("\"\\\/\b\f\n\r\t")", R"("\u0041\u00e9\u20ac")", R"("\uD83D\uDE00")", R"("\ud83d\ude00")",
        R"("\u0000")", R"("\uDE00")", R"("\uD83D")", R"("\uD83Dx")", R"("\uD83D\u0041")", R"("\uD83D\uD83D")",
        R"("\u12")", R"("\u12G4")", R"("\x41")", R"("\a")", "\"a\tb\"", "\"a\nb\"", "\"\x1f\"", "\"\x7f\"",
        "\"\xC3\xA9\"", "\"\xE2\x82\xAC\"", "\"\xF0\x9F\x98\x80\"", "\"\xF4\x8F\xBF\xBF\"", "\"\xF4\x90\x80\x80\"",
        "\"\xC0\xAF\"", "\"\xC1\xBF\"", "\"\xE0\x80\xAF\"", "\"\xED\xA0\x80\"", "\"\xED\x9F\xBF\"", "\"\xFF\"",
        "\"\x80\"", "\"\xC3\"", "\"\xE2\x82\"", "\"\xF0\x9F\x98\"", "\"\xF5\x80\x80\x80\"",
        // Structure.
        "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{\"a\"}", "{\"a\" 1}", "{1:2}", "{a:1}", "[", "]", "{", "}",
        "[1]x", "{} {}", "nul", "truex", "[true,false,null]", "\"abc", "", "   ", "[\"a\",{\"b\":[{}]}]",
        std::string("[1,\0]", 5), std::string("\"a\0b\"", 5), "\xEF\xBB\xBF[]",
        // Nesting at the bound.
        json_nested(io_json::max_json_depth, '[', ']'),
        "{\"a\":" + json_nested(io_json::max_json_depth - 1, '[', ']') + "}",
    };
    for (const std::string& text : documents) {
        CAPTURE(text);
        const bool peer_accepts = json_peer_accepts(text);
        bool ours_accepts = true;
        json_value ours;
        try {
            ours = io_json::parse_json(text, "t.json", errc::bad_header);
        } catch (const actlens::error& e) {
            ours_accepts = false;
            CHECK(e.code() == errc::bad_header);
            CHECK(std::string(e.what()).find("t.json") != std::string::npos);
        }
        CHECK(ours_accepts == peer_accepts);
        if (ours_accepts && peer_accepts) {
            CHECK(same_as_peer(ours, nlohmann::json::parse(text)));
            // The writer: our text parses back to the same value, and nlohmann reads the same value.
            for (const int indent : {-1, 0, 2}) {
                const std::string written = io_json::dump_json(ours, indent);
                CAPTURE(written);
                const json_value again = io_json::parse_json(written, "written", errc::bad_header);
                const bool infinite = ours.is_number() && !std::isfinite(ours.as_double());
                CHECK((infinite ? again.is_null() : again == ours));
                if (!infinite) CHECK(same_as_peer(again, nlohmann::json::parse(written)));
            }
        }
    }
}

TEST_CASE("json: where the reader differs from nlohmann, on purpose", "[io][json]") {
    const auto refused = [](const std::string& text) {
        return !error_of([&] { io_json::parse_json(text, "x.json", errc::bad_header); }).empty();
    };
    // nlohmann reads a NUL byte outside strings as the end of the text; RFC 8259 has no such rule.
    CHECK(nlohmann::json::accept(std::string("[1]\0junk", 8)));
    CHECK(refused(std::string("[1]\0junk", 8)));
    // nlohmann keeps the last of two members with one key; we refuse the object (json_duplicates::keep
    // keeps both, for a caller that reports it in its own words).
    CHECK(nlohmann::json::accept(R"({"a": 1, "a": 2})"));
    CHECK(refused(R"({"a": 1, "a": 2})"));
    // nlohmann nests as deep as memory allows; we stop at max_json_depth.
    CHECK(nlohmann::json::accept(json_nested(io_json::max_json_depth + 1, '[', ']')));
    CHECK(refused(json_nested(io_json::max_json_depth + 1, '[', ']')));
}

TEST_CASE("json: numbers keep their class, so counts refuse floats, negatives and huge values", "[io][json]") {
    const auto parse = [](const std::string& text) { return io_json::parse_json(text, "n.json", errc::bad_config); };
    CHECK(parse("18446744073709551615").as_uint64() == std::numeric_limits<std::uint64_t>::max());
    CHECK(parse("-9223372036854775808").as_int64() == std::numeric_limits<std::int64_t>::min());
    CHECK(parse("9223372036854775807").as_int64() == std::numeric_limits<std::int64_t>::max());
    CHECK(parse("7").as_double() == 7.0);
    CHECK(parse("-0").is_integer());
    CHECK_FALSE(parse("-0").is_unsigned());
    CHECK(parse("4.0").is_number());
    CHECK_FALSE(parse("4.0").is_integer());
    CHECK_FALSE(parse("1e2").is_integer());
    CHECK_FALSE(parse("18446744073709551616").is_integer());
    // The typed reads name the field and use the caller's code.
    require_error([&] { parse("4.0").as_uint64(errc::bad_config, "'c.json': field 'n_layers'"); }, errc::bad_config,
                  "'c.json': field 'n_layers' must be a non-negative integer of at most 2^64-1, not 4.0");
    require_error([&] { parse("-1").as_uint64(errc::bad_header, "'m.json': rows"); }, errc::bad_header,
                  "'m.json': rows must be a non-negative integer of at most 2^64-1, not -1");
    require_error([&] { parse("9223372036854775808").as_int64(errc::tokenizer_file, "id"); }, errc::tokenizer_file,
                  "id must be an integer from -2^63 to 2^63-1, not 9223372036854775808");
    require_error([&] { parse("\"x\"").as_double(errc::bad_config, "theta"); }, errc::bad_config,
                  "theta must be a number, not \"x\"");
    require_error([&] { parse("[1]").as_string(errc::bad_config, "name"); }, errc::bad_config,
                  "name must be a string, not an array of 1 elements");
    require_error([&] { parse("1").as_bool(errc::bad_config, "flag"); }, errc::bad_config, "flag must be true or false");
}

TEST_CASE("json: nesting up to the bound parses, one level more is refused at its byte", "[io][json]") {
    const std::size_t limit = io_json::max_json_depth;
    CHECK(io_json::parse_json(json_nested(limit, '[', ']'), "a.json", errc::bad_header).is_array());
    require_error([&] { io_json::parse_json(json_nested(limit + 1, '[', ']'), "a.json", errc::bad_header); },
                  errc::bad_header, "'a.json': JSON nests deeper than 128 levels at byte 128");
    // 24,000 levels (the fuzzer's case) are refused without recursing that deep.
    require_error([&] { io_json::parse_json(std::string(24000, '['), "deep.json", errc::tokenizer_file); },
                  errc::tokenizer_file, "deeper than 128 levels at byte 128");
    // An object counts like an array, and brackets inside strings do not count.
    std::string objects;
    for (std::size_t i = 0; i < limit + 1; ++i) objects += "{\"k\":";
    require_error([&] { io_json::parse_json(objects, "o.json", errc::bad_header); }, errc::bad_header,
                  "deeper than 128 levels at byte " + std::to_string(5 * limit));
    const std::string brackets(1000, '[');
    const std::string text = "{\"k\": \"" + brackets + "\\\"" + brackets + "\", \"v\": [1, {\"w\": \"]]]\"}]}";
    const json_value j = io_json::parse_json(text, "s.json", errc::bad_header);
    CHECK(j.at("k").as_string().size() == 2001);
    CHECK(j.at("v")[1].at("w").as_string() == "]]]");
}

TEST_CASE("json: objects keep file order; a repeated key is refused or kept as asked", "[io][json]") {
    const json_value j = io_json::parse_json(R"({"b": 1, "a": 2, "c": {"z": 0, "y": 1}})", "o.json", errc::bad_header);
    std::vector<std::string> keys;
    for (const auto& [key, value] : j.members()) keys.push_back(key);
    CHECK(keys == std::vector<std::string>{"b", "a", "c"});
    CHECK(j.at("c").key(0) == "z");
    CHECK(j.find("missing") == nullptr);
    require_error([&] { j.at("missing", errc::bad_config, "'o.json'"); }, errc::bad_config,
                  "'o.json' has no member 'missing'");

    require_error([] { io_json::parse_json(R"({"a": 1, "b": 2, "a": 3})", "d.json", errc::tokenizer_file); },
                  errc::tokenizer_file, "'d.json' is not valid JSON here: the object at byte 0 names the key \"a\" twice");
    // A large object (the sorted check) and a nested one.
    std::string large = "{";
    for (int i = 0; i < 100; ++i) large += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ",";
    CHECK(io_json::parse_json(large.substr(0, large.size() - 1) + "}", "l.json", errc::bad_header).size() == 100);
    require_error([&] { io_json::parse_json(large + "\"k57\": 0}", "l.json", errc::bad_header); }, errc::bad_header,
                  "names the key \"k57\" twice");
    require_error([] { io_json::parse_json(R"([{"x": {"q": 1, "q": 1}}])", "n.json", errc::bad_header); },
                  errc::bad_header, "the object at byte 7 names the key \"q\" twice");
    // Kept: both members, in order; find gives the last one, as nlohmann's parser keeps it.
    const json_value kept =
        io_json::parse_json(R"({"a": 1, "a": 3})", "k.json", errc::bad_header, io_json::json_duplicates::keep);
    CHECK(kept.size() == 2);
    CHECK(kept.at("a").as_uint64() == 3);
    REQUIRE(io_json::repeated_json_key(kept) != nullptr);
    CHECK(*io_json::repeated_json_key(kept) == "a");
    CHECK(io_json::repeated_json_key(j) == nullptr);
}

TEST_CASE("json: syntax errors name the source and the byte, and never quote the input", "[io][json]") {
    require_error([] { io_json::parse_json("{\"a\": }", "cfg.json", errc::bad_config); }, errc::bad_config,
                  "'cfg.json' is not valid JSON: an unexpected character where a value should be at byte 6");
    require_error([] { io_json::parse_json("[1, 2", "a.json", errc::bad_config); }, errc::bad_config,
                  "an array that does not end at byte 5");
    require_error([] { io_json::parse_json("\"\\uDE00\"", "s.json", errc::bad_config); }, errc::bad_config,
                  "a lone low surrogate in a \\u escape at byte 1");
    require_error([] { io_json::parse_json("\"ab\xC0\xAF\"", "u.json", errc::bad_config); }, errc::bad_config,
                  "a string that is not UTF-8 at byte 3");
    // A 100,000-digit number followed by junk, and a megabyte string that does not end.
    const std::string huge = "[0." + std::string(100000, '7') + "x]";
    const std::string message = error_of([&] { io_json::parse_json(huge, "n.json", errc::bad_header); });
    CHECK(message.find("'n.json' is not valid JSON: a missing ',' or ']' in an array at byte 100003") !=
          std::string::npos);
    CHECK(message.size() < 200);
    CHECK_THAT(error_of([] { io_json::parse_json("[" + std::string(100000, '7') + "]", "b.json", errc::bad_header); }),
               Catch::Contains("'b.json' is not valid JSON: a number too large for a double at byte 1"));
    CHECK(error_of([] { io_json::parse_json("\"" + std::string(1 << 20, 'x'), "s.json", errc::bad_header); }).size() <
          200);
}

TEST_CASE("json: the writer escapes strings, indents, and refuses bytes that are not UTF-8", "[io][json]") {
    using io_json::dump_json;
    json_value doc = json_value::object({{"s", "a\"b\\c\n\x01\xC3\xA9/"},
                                         {"n", json_value::array({0, -5, std::uint64_t(18446744073709551615u), 1.5, 2.0})},
                                         {"e", json_value::object()},
                                         {"f", false},
                                         {"z", nullptr}});
    CHECK(dump_json(doc) ==
          "{\"s\":\"a\\\"b\\\\c\\n\\u0001\xC3\xA9/\",\"n\":[0,-5,18446744073709551615,1.5,2.0],\"e\":{},\"f\":false,"
          "\"z\":null}");
    CHECK(dump_json(json_value::object({{"a", json_value::array({1, 2})}}), 1) == "{\n \"a\": [\n  1,\n  2\n ]\n}");
    // nlohmann reads it to the same values.
    CHECK(same_as_peer(doc, nlohmann::json::parse(dump_json(doc, 2))));
    // Doubles are written in the shortest form that reads back exactly; infinities as null.
    for (const double d : {0.1, 1.0 / 3.0, 1e-300, 6.02214076e23, -2.5, 5e-324, 1.7976931348623157e308}) {
        const json_value back = io_json::parse_json(dump_json(json_value(d)), "d", errc::bad_header);
        CHECK(back.as_double() == d);
    }
    CHECK(dump_json(json_value(std::numeric_limits<double>::infinity())) == "null");
    doc.set("s", "replaced");
    doc.set("new", 7);
    CHECK(doc.at("s").as_string() == "replaced");
    CHECK(doc.key(doc.size() - 1) == "new");
    require_error([] { dump_json(json_value(std::string("bad\xFF"))); }, errc::invalid_argument, "not UTF-8");
}

TEST_CASE("json: excerpts are short and never recurse", "[io][json]") {
    using io_json::detail::json_excerpt;
    CHECK(json_excerpt(json_value(42)) == "42");
    CHECK(json_excerpt(json_value("ab")) == "\"ab\"");
    CHECK(json_excerpt(json_value::array({1, 2, 3})) == "an array of 3 elements");
    CHECK(json_excerpt(json_value::object({{"a", 1}})) == "an object of 1 members");
    CHECK(json_excerpt(json_value(std::string(10000, 'x')), 16) == "\"xxxxxxxxxxxxxxxx\"... (10000 bytes)");
    // A cut never splits a code point: "é" is two bytes, so 3 bytes of "ééé" keep one of them.
    CHECK(json_excerpt(json_value(std::string("\xC3\xA9\xC3\xA9\xC3\xA9")), 3) == "\"\xC3\xA9\"... (6 bytes)");
    // Bytes that are not UTF-8 (in a value built by code) become U+FFFD.
    CHECK(json_excerpt(json_value(std::string("a\xFF"))) == "\"a\xEF\xBF\xBD\"");
    CHECK(io_json::detail::text_excerpt(std::string(100, 'y'), 4) == "yyyy... (100 bytes)");
}
