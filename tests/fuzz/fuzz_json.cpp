// tests/fuzz/fuzz_json.cpp: differential libFuzzer harness for the JSON reader and writer
// (io/json.hpp) against nlohmann::json. Both must accept or refuse each input alike and, when they
// accept, hold the same value; our writer's text must read back (with both) to the same value.
// Documented differences, checked as such: we refuse nesting deeper than max_json_depth (nlohmann is
// not run on such inputs: its writer and comparisons recurse) and objects that name a key twice
// (nlohmann keeps the last; when it accepts such a text, we must accept it with json_duplicates::keep),
// and texts with a NUL byte (nlohmann stops reading at one outside strings; we refuse them).
#include "fuzz_common.hpp"

#include "../json_peer.hpp"

#include <actlens/io/json.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

/// The deepest nesting of brackets outside strings (a pre-pass of our own, like the one the parser
/// replaced): inputs deeper than the bound are not given to nlohmann.
std::size_t bracket_depth(std::string_view text) {
    std::size_t depth = 0, deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest) deepest = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

[[noreturn]] void disagree(const char* what) {
    std::fprintf(stderr, "fuzz_json: %s\n", what);
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using actlens::io::json_value;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::string source = "input.json";
    bool ours_accepts = true, repeated_key = false;
    json_value ours;
    try {
        ours = actlens::io::parse_json(text, source, actlens::errc::bad_header);
    } catch (const actlens::error& e) {
        ours_accepts = false;
        const std::string_view message = e.what();
        if (message.size() > 400) disagree("an error message longer than 400 bytes");
        repeated_key = message.find("names the key") != std::string_view::npos;
    }
    if (bracket_depth(text) > actlens::io::max_json_depth) {
        // Deeper than the bound anywhere: refused (maybe for an earlier syntax error).
        if (ours_accepts) disagree("nesting deeper than the bound was accepted");
        return 0;
    }
    if (text.find('\0') != std::string_view::npos) {
        // nlohmann ends its input at a NUL byte outside strings ("1\0junk" is 1); RFC 8259 has no such
        // rule, and a NUL is never valid JSON text: refused.
        if (ours_accepts) disagree("a text with a NUL byte was accepted");
        return 0;
    }
    const nlohmann::json peer = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    const bool peer_accepts = !peer.is_discarded();
    if (repeated_key) {
        // Refused as soon as the object closes, maybe before a syntax error that nlohmann refuses; when
        // nlohmann accepts the text, so must we when keeping repeated keys.
        if (peer_accepts) try {
                (void)actlens::io::parse_json(text, source, actlens::errc::bad_header,
                                              actlens::io::json_duplicates::keep);
            } catch (const actlens::error&) {
                disagree("refused with repeated keys kept what nlohmann accepts");
            }
        return 0;
    }
    if (ours_accepts != peer_accepts) disagree(ours_accepts ? "accepted what nlohmann refuses" : "refused what nlohmann accepts");
    if (!ours_accepts) return 0;
    if (!actlens::test_json_peer::same_as_peer(ours, peer)) disagree("a value differs from nlohmann's");
    for (const int indent : {-1, 1}) {
        const std::string written = actlens::io::dump_json(ours, indent);
        const json_value again = actlens::io::parse_json(written, "written", actlens::errc::bad_header);
        if (!(again == ours)) disagree("our text of a value reads back to another value");
        const nlohmann::json peer_again = nlohmann::json::parse(written, nullptr, false);
        if (peer_again.is_discarded() || !actlens::test_json_peer::same_as_peer(again, peer_again))
            disagree("nlohmann reads our text of a value to another value");
    }
    return 0;
}
