// tests/test_report_helpers.hpp: what the report tests share: counting occurrences in markup.
#pragma once

#include <cstddef>
#include <string>

/// Non-overlapping occurrences of `needle` in `s`.
inline std::size_t count_of(const std::string& s, const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + needle.size())) ++n;
    return n;
}
