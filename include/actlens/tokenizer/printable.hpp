// actlens/tokenizer/printable.hpp: token pieces as one line of readable text, for tables and logs.
#pragma once

#include <string>
#include <string_view>

namespace actlens {

/// `piece` with newlines shown as \n and other control bytes as \xNN, so that any piece (or decoded
/// text) prints on one line of a table. Bytes from 0x80 up pass through: they are UTF-8.
inline std::string printable_piece(std::string_view piece) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(piece.size());
    for (const unsigned char ch : piece) {
        if (ch == '\n') {
            out += "\\n";
        } else if (ch < 0x20 || ch == 0x7f) {
            out += "\\x";
            out += hex[ch >> 4];
            out += hex[ch & 15];
        } else {
            out += static_cast<char>(ch);
        }
    }
    return out;
}

} // namespace actlens
