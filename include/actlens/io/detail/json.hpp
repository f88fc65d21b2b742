// actlens/io/detail/json.hpp: JSON from files we do not trust.
//
// Two hazards of nlohmann::json with hostile input, both found by fuzzing: its destructor and dump()
// recurse once per nesting level, so "[[[[..." 24,000 levels deep overflows an 8 MiB stack; and an
// error message that dumps a value from the file can be as large as the file. Every parser of the
// library therefore checks the nesting depth before it parses (check_json_depth) and names values in
// messages with json_excerpt, which is bounded in length and never recurses.
#pragma once

#include <actlens/core/deferred.hpp>
#include <actlens/error.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace actlens::io::detail {

/// Deepest nesting of arrays and objects a file may use. Real configs and tokenizer.json files nest
/// fewer than 10 levels; 128 levels of recursion use a few tens of KiB of stack.
inline constexpr std::size_t max_json_depth = 128;

/// Throws actlens::error `code` naming `source` when `text` nests arrays and objects deeper than
/// `max_depth`. Brackets inside strings (with their escapes) are not counted. Linear time, no
/// allocation; malformed JSON is left for the parser to report.
inline void check_json_depth(std::string_view text, const std::string& source, errc code,
                             std::size_t max_depth = max_json_depth) {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        if (in_string) {
            if (ch == '\\')
                ++i; // the escaped character cannot end the string
            else if (ch == '"')
                in_string = false;
            continue;
        }
        if (ch == '"') {
            in_string = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max_depth)
                fail(code, "'{}': JSON nests deeper than {} levels at byte {}", source, max_depth, i);
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            --depth;
        }
    }
}

/// Parses `text` after check_json_depth; a syntax error becomes actlens::error `code` naming `source`.
/// A template (of nothing), as every function that parses JSON and the non-template functions that
/// call them: nlohmann's parser is then compiled only in the files that read JSON (README "Compile time").
template <class Deferred = void>
nlohmann::json parse_json_bounded(std::string_view text, const std::string& source, errc code) {
    check_json_depth(text, source, code);
    // The parser named through a type that depends on Deferred: a non-dependent call would be compiled
    // where this template is defined, in every file (core/deferred.hpp).
    using json = actlens::detail::deferred_t<nlohmann::json, Deferred>;
    try {
        return json::parse(text.data(), text.data() + text.size());
    } catch (const nlohmann::json::exception& e) {
        // nlohmann quotes the token it stopped at, which a hostile file can make megabytes long.
        const std::string_view what = e.what();
        constexpr std::size_t max_what = 240;
        fail(code, "'{}' is not valid JSON: {}{}", source, what.substr(0, max_what),
             what.size() > max_what ? "..." : "");
    }
}

/// A string from a file, for an error message: cut to `max_chars` bytes at a code point boundary, with
/// its full size appended when cut ("GPT2LMHeadMo... (1000000 bytes)"). Bytes are copied as they are.
inline std::string text_excerpt(std::string_view text, std::size_t max_chars = 80) {
    if (text.size() <= max_chars) return std::string(text);
    std::size_t cut = max_chars;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut; // whole code points
    return std::string(text.substr(0, cut)) + "... (" + std::to_string(text.size()) + " bytes)";
}

/// A short description of a JSON value for an error message: scalars as JSON text (strings cut to
/// `max_chars` bytes, invalid UTF-8 replaced), arrays and objects by kind and size only.
inline std::string json_excerpt(const nlohmann::json& value, std::size_t max_chars = 80) {
    if (value.is_array()) return "an array of " + std::to_string(value.size()) + " elements";
    if (value.is_object()) return "an object of " + std::to_string(value.size()) + " members";
    if (value.is_string()) {
        const std::string& s = value.get_ref<const std::string&>();
        if (s.size() > max_chars) {
            std::size_t cut = max_chars;
            while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut; // whole code points
            return nlohmann::json(s.substr(0, cut)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                   "... (" + std::to_string(s.size()) + " bytes)";
        }
    }
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace actlens::io::detail
