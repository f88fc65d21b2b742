// actlens/report/text.hpp: text that is safe to put into HTML and SVG, and number formatting.
//
// Token pieces are arbitrary bytes: markup characters, quotes, control bytes, half of a UTF-8
// character (a byte-level BPE piece often is). Every string a report shows goes through
// display_text() and then escape_markup(), so a label can neither inject markup nor make the file
// invalid XML (control characters are not allowed in XML 1.0, not even as character references).
#pragma once

#include <actlens/core/utf8.hpp>
#include <actlens/tokenizer/printable.hpp>

#include <fmt/core.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace actlens::report {

/// `text` as printable, valid UTF-8 on one line: control bytes as \n / \xNN (printable_piece), and
/// every byte that is not part of a well-formed UTF-8 character (stray continuation bytes, truncated
/// or overlong sequences, surrogates, code points above U+10FFFF, the non-characters U+FFFE/U+FFFF
/// that XML forbids) as \xNN, so the bytes stay visible instead of becoming U+FFFD.
inline std::string display_text(std::string_view text);

/// `text` with &, <, >, " and ' replaced by entities: safe in element content and in quoted
/// attribute values of HTML and XML. Apply it after display_text().
inline std::string escape_markup(std::string_view text);

/// display_text() then escape_markup(): what every label and caption goes through.
inline std::string safe_text(std::string_view text) { return escape_markup(display_text(text)); }

/// A value for hover text and tables: 4 significant digits, "nan", "inf" or "-inf".
inline std::string format_value(double v);

/// A value for data attributes: the shortest text that reads back as the same double.
inline std::string exact_value(double v);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

// Length of the well-formed UTF-8 character at s[i] (core/utf8.hpp), or 0; the noncharacters
// U+FFFE and U+FFFF count as not text here.
inline std::size_t utf8_length(std::string_view s, std::size_t i) {
    const utf8::utf8_char u = utf8::decode_utf8(s, i);
    return u.cp == 0xFFFE || u.cp == 0xFFFF ? 0 : u.length;
}

} // namespace detail

inline std::string display_text(std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    const std::string printable = printable_piece(text);
    const std::string_view s = printable;
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = detail::utf8_length(s, i);
        if (n == 0) {
            const auto b = static_cast<unsigned char>(s[i]);
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 15];
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

inline std::string escape_markup(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char ch : text) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += ch;
        }
    }
    return out;
}

inline std::string format_value(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return fmt::format("{:.4g}", v);
}

inline std::string exact_value(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return fmt::format("{}", v);
}

} // namespace actlens::report
