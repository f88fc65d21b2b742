// Tests of actlens/io/detail/json.hpp: the nesting bound that keeps hostile JSON from overflowing
// the stack, and bounded excerpts of values for error messages.
#include <catch2/catch.hpp>

#include <actlens/io/detail/json.hpp>

#include "test_helpers.hpp"

#include <string>

namespace {

namespace d = actlens::io::detail;
using actlens::errc;

std::string nested(std::size_t levels, char open, char close) {
    return std::string(levels, open) + std::string(levels, close);
}

} // namespace

TEST_CASE("json: nesting up to the bound parses, one level more is refused", "[io]") {
    const std::size_t limit = d::max_json_depth;
    CHECK(d::parse_json_bounded(nested(limit, '[', ']'), "a.json", errc::bad_header).is_array());
    require_error([&] { d::parse_json_bounded(nested(limit + 1, '[', ']'), "a.json", errc::bad_header); },
                  errc::bad_header, "a.json");
    // The fuzzer's case: 24,000 levels would overflow the stack in nlohmann's destructor or dump().
    require_error([&] { d::check_json_depth(std::string(24000, '['), "deep.json", errc::tokenizer_file); },
                  errc::tokenizer_file, "deeper than 128 levels at byte 128");
}

TEST_CASE("json: brackets inside strings and escapes do not count", "[io]") {
    const std::string brackets(1000, '[');
    const std::string text = "{\"k\": \"" + brackets + "\\\"" + brackets + "\", \"v\": [1, {\"w\": \"]]]\"}]}";
    const nlohmann::json j = d::parse_json_bounded(text, "s.json", errc::bad_header);
    CHECK(j["k"].get<std::string>().size() == 2001);
    CHECK(j["v"][1]["w"] == "]]]");
    // An object counts like an array.
    require_error([&] { d::check_json_depth(nested(200, '{', '}'), "o.json", errc::bad_header, 199); },
                  errc::bad_header, "199");
}

TEST_CASE("json: syntax errors name the source, and the parser's message is cut", "[io]") {
    require_error([] { d::parse_json_bounded("{\"a\": }", "cfg.json", errc::bad_config); }, errc::bad_config,
                  "'cfg.json' is not valid JSON");
    // nlohmann quotes the last token read: a 100,000-digit number followed by junk.
    const std::string huge = "[" + std::string(100000, '7') + "x]";
    const std::string message = error_of([&] { d::parse_json_bounded(huge, "n.json", errc::bad_header); });
    CHECK(message.find("'n.json' is not valid JSON") != std::string::npos);
    CHECK(message.size() < 400);
}

TEST_CASE("json: excerpts are short and never recurse", "[io]") {
    CHECK(d::json_excerpt(nlohmann::json(42)) == "42");
    CHECK(d::json_excerpt(nlohmann::json("ab")) == "\"ab\"");
    CHECK(d::json_excerpt(nlohmann::json::array({1, 2, 3})) == "an array of 3 elements");
    CHECK(d::json_excerpt(nlohmann::json::object({{"a", 1}})) == "an object of 1 members");
    const std::string excerpt = d::json_excerpt(nlohmann::json(std::string(10000, 'x')), 16);
    CHECK(excerpt == "\"xxxxxxxxxxxxxxxx\"... (10000 bytes)");
    // A cut never splits a code point: "é" is two bytes, so 3 bytes of "ééé" keep one of them.
    CHECK(d::json_excerpt(nlohmann::json(std::string("\xC3\xA9\xC3\xA9\xC3\xA9")), 3) == "\"\xC3\xA9\"... (6 bytes)");
}
