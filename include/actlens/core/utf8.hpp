// actlens/core/utf8.hpp: reading and writing one UTF-8 character, for the JSON reader, the
// tokenizers and the report's text cutting.
//
// Well-formed means RFC 3629 (Unicode's Table 3-7): no overlong forms, no surrogates, nothing past
// U+10FFFF; bytes that are not are reported, never decoded to something else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace actlens::utf8 {

/// A code point and the number of bytes it took; length 0 when the bytes were not well-formed UTF-8.
struct utf8_char {
    std::uint32_t cp;
    std::size_t length;
};

/// Decodes the character at s[i] (i < s.size()).
inline utf8_char decode_utf8(std::string_view s, std::size_t i) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = byte(0);
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80) return {c, 1};
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1Fu, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, cp = c & 0x0Fu, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07u, min = 0x10000;
    else
        return {0, 0};
    if (s.size() - i < n) return {0, 0};
    for (std::size_t k = 1; k < n; ++k) {
        if ((byte(k) & 0xC0) != 0x80) return {0, 0};
        cp = (cp << 6) | (byte(k) & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
    return {cp, n};
}

/// Appends code point cp (at most U+10FFFF) as UTF-8.
inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

} // namespace actlens::utf8
