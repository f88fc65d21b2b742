// actlens/io/json.hpp: JSON values, a parser for files we do not trust, and a writer.
//
// The library reads config.json, safetensors headers, tokenizer.json, vocab.json and capture
// manifests, and writes safetensors headers, capture manifests and the tokenizer.json document it
// assembles from a GGUF vocabulary. This header is all of JSON it needs, cheap to compile (README
// "Compile time"): the parser, the writer and every function that formats an error are templates of
// nothing (core/deferred.hpp), compiled only in the files that call them.
//
// The grammar is RFC 8259's. Choices that differ from a permissive reader, for hostile files:
//   - nesting deeper than max_json_depth (128) levels is an error: the parser and the destructor of a
//     value recurse once per level, and "[[[[..." 24,000 levels deep would overflow the stack;
//   - strings must be valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF) and \u
//     escapes must pair surrogates: tokenizers index pieces by their bytes;
//   - an object that names a key twice is an error (json_duplicates::refuse), or is kept with both
//     members, in file order, for a caller that reports it in its own words (json_duplicates::keep);
//   - error messages name the source and the byte offset, and never quote more than a bounded excerpt.
// Objects keep their members in file order.
#pragma once

#include <actlens/core/utf8.hpp>
#include <actlens/error.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace actlens::io {

/// Deepest nesting of arrays and objects a file may use. Real configs and tokenizer.json files nest
/// fewer than 10 levels; 128 levels of recursion use a few tens of KiB of stack.
inline constexpr std::size_t max_json_depth = 128;

/// The six kinds of JSON value.
enum class json_kind : unsigned char { null, boolean, number, string, array, object };

/// How a number was written, which decides what it may stand for: an integer written without a
/// fraction or an exponent, non-negative and at most 2^64-1 (unsigned_integer) or negative and at
/// least -2^63 (signed_integer, "-0" included); every other number is floating (also 1.0, 1e3 and
/// integers out of those ranges). These are nlohmann::json's classes, so sizes written 4.0 or -1
/// are refused where a count is expected.
enum class json_number_class : unsigned char { unsigned_integer, signed_integer, floating };

/// What the parser does with an object that names a key twice.
enum class json_duplicates : unsigned char { refuse, keep };

class json_value;

namespace detail {

/// The length of the well-formed UTF-8 character at text[i] (core/utf8.hpp), or 0.
inline std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept {
    return utf8::decode_utf8(text, i).length;
}

} // namespace detail

/// One member of an object seen through json_value::members(): `for (const auto& [key, value] : ...)`.
struct json_member_ref {
    const std::string& key;
    const json_value& value;
};

/// A JSON value. Copyable; arrays and objects own their elements.
class json_value {
public:
    json_value() noexcept {}
    json_value(std::nullptr_t) noexcept {}
    json_value(bool b) noexcept : m_kind(json_kind::boolean), m_bool(b) {}
    /// An integer of any integral type (not bool).
    template <class Integer,
              std::enable_if_t<std::is_integral_v<Integer> && !std::is_same_v<Integer, bool>, int> = 0>
    json_value(Integer i) noexcept : m_kind(json_kind::number) {
        if constexpr (std::is_signed_v<Integer>) {
            if (i < 0) {
                m_class = json_number_class::signed_integer;
                m_bits = static_cast<std::uint64_t>(0) - static_cast<std::uint64_t>(static_cast<std::int64_t>(i));
                m_double = static_cast<double>(i);
                return;
            }
        }
        m_class = json_number_class::unsigned_integer;
        m_bits = static_cast<std::uint64_t>(i);
        m_double = static_cast<double>(m_bits);
    }
    /// A floating number (written as null when it is not finite, as JSON has no infinities).
    json_value(double d) noexcept : m_kind(json_kind::number), m_class(json_number_class::floating), m_double(d) {}
    json_value(const char* s) : m_kind(json_kind::string), m_string(s) {}
    json_value(std::string s) noexcept : m_kind(json_kind::string), m_string(std::move(s)) {}
    json_value(std::string_view s) : m_kind(json_kind::string), m_string(s) {}

    /// An array of `elements`.
    static json_value array(std::vector<json_value> elements = {}) {
        json_value v;
        v.m_kind = json_kind::array;
        v.m_items = std::move(elements);
        return v;
    }
    /// An object of `members` {key, value}, in that order. Keys should differ (the writer does not check).
    static json_value object(std::initializer_list<std::pair<std::string_view, json_value>> members = {}) {
        json_value v;
        v.m_kind = json_kind::object;
        v.m_keys.reserve(members.size());
        v.m_items.reserve(members.size());
        for (const auto& [key, value] : members) v.append_member(std::string(key), value);
        return v;
    }

    json_kind kind() const noexcept { return m_kind; }
    bool is_null() const noexcept { return m_kind == json_kind::null; }
    bool is_bool() const noexcept { return m_kind == json_kind::boolean; }
    bool is_number() const noexcept { return m_kind == json_kind::number; }
    bool is_string() const noexcept { return m_kind == json_kind::string; }
    bool is_array() const noexcept { return m_kind == json_kind::array; }
    bool is_object() const noexcept { return m_kind == json_kind::object; }
    /// A number written as an integer that fits int64 or uint64 (json_number_class).
    bool is_integer() const noexcept { return is_number() && m_class != json_number_class::floating; }
    /// A number written as a non-negative integer that fits uint64 ("-0" is not one).
    bool is_unsigned() const noexcept { return is_number() && m_class == json_number_class::unsigned_integer; }
    json_number_class number_class() const noexcept { return m_class; }
    /// "null", "boolean", "number", "string", "array" or "object", for messages.
    const char* type_name() const noexcept {
        constexpr const char* names[] = {"null", "boolean", "number", "string", "array", "object"};
        return names[static_cast<int>(m_kind)];
    }

    // Typed reads. Each throws actlens::error `code` saying that `what` (a field, with its file) must be
    // of the kind asked for, and what it is (a bounded excerpt), when the value is not.

    template <class Deferred = void>
    bool as_bool(errc code = errc::invalid_argument, std::string_view what = "a JSON value") const {
        if (!is_bool()) refuse<Deferred>(code, what, "true or false");
        return m_bool;
    }
    template <class Deferred = void>
    const std::string& as_string(errc code = errc::invalid_argument, std::string_view what = "a JSON value") const {
        if (!is_string()) refuse<Deferred>(code, what, "a string");
        return m_string;
    }
    /// A non-negative integer (json_number_class::unsigned_integer).
    template <class Deferred = void>
    std::uint64_t as_uint64(errc code = errc::invalid_argument, std::string_view what = "a JSON value") const {
        if (!is_unsigned()) refuse<Deferred>(code, what, "a non-negative integer of at most 2^64-1");
        return m_bits;
    }
    /// An integer from -2^63 to 2^63-1.
    template <class Deferred = void>
    std::int64_t as_int64(errc code = errc::invalid_argument, std::string_view what = "a JSON value") const {
        constexpr auto top = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (is_unsigned() && m_bits <= top) return static_cast<std::int64_t>(m_bits);
        if (is_integer() && m_class == json_number_class::signed_integer && m_bits <= top + 1)
            return m_bits == top + 1 ? std::numeric_limits<std::int64_t>::min()
                                     : -static_cast<std::int64_t>(m_bits);
        refuse<Deferred>(code, what, "an integer from -2^63 to 2^63-1");
    }
    /// Any number, as the nearest double (integers beyond 2^53 round).
    template <class Deferred = void>
    double as_double(errc code = errc::invalid_argument, std::string_view what = "a JSON value") const {
        if (!is_number()) refuse<Deferred>(code, what, "a number");
        return m_double;
    }
    /// The magnitude of an integer (the value of an unsigned one; minus the value of a signed one).
    std::uint64_t integer_magnitude() const noexcept { return m_bits; }

    // Arrays and objects.

    /// Elements of an array, members of an object; 0 for the other kinds.
    std::size_t size() const noexcept { return m_items.size(); }
    bool empty() const noexcept { return m_items.empty(); }
    /// The elements of an array (empty for the other kinds). Of a temporary (`for (auto& e :
    /// parse_json(...).elements())`) they are moved out and returned by value, so that the loop does
    /// not walk the vector of a value destroyed before its first iteration.
    const std::vector<json_value>& elements() const& noexcept { return m_items; }
    std::vector<json_value> elements() && noexcept { return std::move(m_items); }
    /// Element `i` of an array; `i` must be below size().
    const json_value& operator[](std::size_t i) const noexcept { return m_items[i]; }

    /// The member `key` of an object (the last one when the object was parsed keeping duplicates), or
    /// null when there is none or this is not an object.
    const json_value* find(std::string_view key) const noexcept {
        if (!is_object()) return nullptr;
        for (std::size_t i = m_keys.size(); i-- > 0;)
            if (m_keys[i] == key) return &m_items[i];
        return nullptr;
    }
    bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }
    /// The member `key`; throws actlens::error `code` naming `what` when there is none.
    template <class Deferred = void>
    const json_value& at(std::string_view key, errc code = errc::invalid_argument,
                         std::string_view what = "a JSON object") const {
        const json_value* v = find(key);
        if (!v) fail(code, "{} has no member '{}'", what, key);
        return *v;
    }

    /// The members of an object in file order, each {key, value} (nothing for the other kinds).
    class member_range {
    public:
        class iterator {
        public:
            iterator(const json_value* object, std::size_t i) noexcept : m_object(object), m_i(i) {}
            json_member_ref operator*() const noexcept { return {m_object->m_keys[m_i], m_object->m_items[m_i]}; }
            iterator& operator++() noexcept {
                ++m_i;
                return *this;
            }
            bool operator!=(const iterator& other) const noexcept { return m_i != other.m_i; }
            bool operator==(const iterator& other) const noexcept { return m_i == other.m_i; }

        private:
            const json_value* m_object;
            std::size_t m_i;
        };
        explicit member_range(const json_value& object) noexcept : m_object(&object) {}
        iterator begin() const noexcept { return {m_object, 0}; }
        iterator end() const noexcept { return {m_object, m_object->m_keys.size()}; }

    private:
        const json_value* m_object;
    };
    member_range members() const& noexcept { return member_range(*this); }
    /// A range over a temporary's members would outlive it: keep the value in a variable first.
    member_range members() && = delete;
    /// Key of member `i` of an object; `i` must be below size().
    const std::string& key(std::size_t i) const noexcept { return m_keys[i]; }

    // Building values.

    /// Appends `element` to an array (a null value becomes an empty array first).
    void push_back(json_value element) {
        if (is_null()) m_kind = json_kind::array;
        m_items.push_back(std::move(element));
    }
    /// Appends the member {key, value} to an object (a null value becomes an empty object first),
    /// without looking for `key` among the members already there.
    void append_member(std::string key, json_value value) {
        if (is_null()) m_kind = json_kind::object;
        m_keys.push_back(std::move(key));
        m_items.push_back(std::move(value));
    }
    /// Replaces the value of member `i` of an object; `i` must be below size().
    void set_member(std::size_t i, json_value value) { m_items[i] = std::move(value); }
    /// Sets the member `key` of an object to `value`, replacing one already there.
    void set(std::string_view key, json_value value) {
        for (std::size_t i = m_keys.size(); is_object() && i-- > 0;)
            if (m_keys[i] == key) {
                m_items[i] = std::move(value);
                return;
            }
        append_member(std::string(key), std::move(value));
    }

    /// Same kind and value: numbers compare as integers when both are integers (-0 equals 0), as
    /// doubles when both are floating, and an integer never equals a floating number; objects compare
    /// member by member in order.
    friend bool operator==(const json_value& a, const json_value& b) noexcept {
        if (a.m_kind != b.m_kind) return false;
        switch (a.m_kind) {
        case json_kind::null: return true;
        case json_kind::boolean: return a.m_bool == b.m_bool;
        case json_kind::number:
            if (a.is_integer() && b.is_integer())
                return a.m_bits == b.m_bits && (a.m_bits == 0 || a.m_class == b.m_class);
            return a.m_class == json_number_class::floating && b.m_class == json_number_class::floating &&
                   a.m_double == b.m_double;
        case json_kind::string: return a.m_string == b.m_string;
        case json_kind::array: return a.m_items == b.m_items;
        case json_kind::object: return a.m_keys == b.m_keys && a.m_items == b.m_items;
        }
        return false;
    }
    friend bool operator!=(const json_value& a, const json_value& b) noexcept { return !(a == b); }

private:
    template <class Deferred>
    friend class json_parser;

    template <class Deferred>
    [[noreturn]] void refuse(errc code, std::string_view what, const char* expected) const;

    json_kind m_kind = json_kind::null;
    json_number_class m_class = json_number_class::unsigned_integer;
    bool m_bool = false;
    std::uint64_t m_bits = 0; // an integer's magnitude
    double m_double = 0.0;    // a number's value
    std::string m_string;
    std::vector<std::string> m_keys; // an object's keys, beside their values in m_items
    std::vector<json_value> m_items; // an array's elements or an object's values
};

// ---- writing -------------------------------------------------------------------------------------

namespace detail {

/// Appends `s` as a JSON string literal. Bytes that are not UTF-8 throw actlens::error `code` (the
/// writer) or become U+FFFD (`replace_invalid`, for messages).
template <class Deferred = void>
void append_json_string(std::string& out, std::string_view s, bool replace_invalid,
                        errc code = errc::invalid_argument) {
    constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            const std::size_t n = utf8_sequence_length(s, i);
            if (n == 0) {
                if (!replace_invalid)
                    fail(code, "a JSON string to write is not UTF-8 (byte {} of a {}-byte string)", i, s.size());
                out += "\xEF\xBF\xBD";
                ++i;
                continue;
            }
            out.append(s.substr(i, n));
            i += n;
            continue;
        }
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 15];
            } else {
                out += static_cast<char>(c);
            }
        }
        ++i;
    }
    out += '"';
}

/// Appends a number: integers in full, finite doubles in the shortest form that reads back to the
/// same double (with ".0" when that form looks like an integer, so that it reads back floating), and
/// null for infinities and NaN.
template <class Deferred = void>
void append_json_number(std::string& out, const json_value& v) {
    char buffer[32];
    if (v.is_integer()) {
        if (v.number_class() == json_number_class::signed_integer && v.integer_magnitude() != 0) out += '-';
        const auto r = std::to_chars(buffer, buffer + sizeof buffer, v.integer_magnitude());
        out.append(buffer, r.ptr);
        return;
    }
    const double d = v.as_double();
    if (!std::isfinite(d)) {
        out += "null";
        return;
    }
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, d);
    const std::string_view text(buffer, static_cast<std::size_t>(r.ptr - buffer));
    out += text;
    if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

template <class Deferred>
void append_json(std::string& out, const json_value& v, int indent, int level) {
    const auto newline = [&](int depth) {
        if (indent < 0) return;
        out += '\n';
        out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(depth), ' ');
    };
    switch (v.kind()) {
    case json_kind::null: out += "null"; return;
    case json_kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case json_kind::number: append_json_number(out, v); return;
    case json_kind::string: append_json_string(out, v.as_string(), false); return;
    case json_kind::array:
        if (v.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (i) out += ',';
            newline(level + 1);
            append_json<Deferred>(out, v[i], indent, level + 1);
        }
        newline(level);
        out += ']';
        return;
    case json_kind::object:
        if (v.empty()) {
            out += "{}";
            return;
        }
        out += '{';
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (i) out += ',';
            newline(level + 1);
            append_json_string(out, v.key(i), false);
            out += indent < 0 ? ":" : ": ";
            append_json<Deferred>(out, v.elements()[i], indent, level + 1);
        }
        newline(level);
        out += '}';
        return;
    }
}

} // namespace detail

/// `v` as JSON text: compact with `indent` < 0, else one element or member per line, indented by
/// `indent` spaces per level. A string that is not UTF-8 throws actlens::error invalid_argument.
template <class Deferred = void>
std::string dump_json(const json_value& v, int indent = -1) {
    std::string out;
    detail::append_json<Deferred>(out, v, indent, 0);
    return out;
}

namespace detail {

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
template <class Deferred = void>
std::string json_excerpt(const json_value& value, std::size_t max_chars = 80) {
    if (value.is_array()) return "an array of " + std::to_string(value.size()) + " elements";
    if (value.is_object()) return "an object of " + std::to_string(value.size()) + " members";
    std::string out;
    if (value.is_string()) {
        const std::string& s = value.as_string();
        if (s.size() <= max_chars) {
            append_json_string(out, s, true);
            return out;
        }
        std::size_t cut = max_chars;
        while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut; // whole code points
        append_json_string(out, std::string_view(s).substr(0, cut), true);
        return out + "... (" + std::to_string(s.size()) + " bytes)";
    }
    append_json<Deferred>(out, value, -1, 0);
    return out;
}

} // namespace detail

template <class Deferred>
void json_value::refuse(errc code, std::string_view what, const char* expected) const {
    fail(code, "{} must be {}, not {}", what, expected, detail::json_excerpt<Deferred>(*this));
}

// ---- reading -------------------------------------------------------------------------------------

/// The key an object names twice (the later of the first pair found), or null. O(n log n).
inline const std::string* repeated_json_key(const json_value& object) {
    const std::size_t n = object.is_object() ? object.size() : 0;
    if (n < 2) return nullptr;
    if (n <= 16) {
        for (std::size_t i = 1; i < n; ++i)
            for (std::size_t j = 0; j < i; ++j)
                if (object.key(i) == object.key(j)) return &object.key(i);
        return nullptr;
    }
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return object.key(a) < object.key(b); });
    for (std::size_t i = 1; i < n; ++i)
        if (object.key(order[i]) == object.key(order[i - 1])) return &object.key(std::max(order[i], order[i - 1]));
    return nullptr;
}

/// The recursive-descent parser behind parse_json.
template <class Deferred>
class json_parser {
public:
    json_parser(std::string_view text, const std::string& source, errc code, json_duplicates duplicates)
        : m_text(text), m_source(source), m_code(code), m_duplicates(duplicates) {}

    json_value parse_document() {
        // A UTF-8 byte order mark (some editors write one) is skipped, as nlohmann::json skips it.
        if (m_text.substr(0, 3) == "\xEF\xBB\xBF") m_pos = 3;
        skip_whitespace();
        if (m_pos == m_text.size()) syntax_error("no value", m_pos);
        json_value v = parse_value(0);
        skip_whitespace();
        if (m_pos != m_text.size()) syntax_error("more text after the value", m_pos);
        return v;
    }

private:
    [[noreturn]] void syntax_error(const char* what, std::size_t at) const {
        fail(m_code, "'{}' is not valid JSON: {} at byte {}", m_source, what, at);
    }

    void skip_whitespace() noexcept {
        while (m_pos < m_text.size()) {
            const char c = m_text[m_pos];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
            ++m_pos;
        }
    }

    bool literal(std::string_view word) noexcept {
        if (m_text.substr(m_pos, word.size()) != word) return false;
        m_pos += word.size();
        return true;
    }

    json_value parse_value(std::size_t depth) {
        if (m_pos >= m_text.size()) syntax_error("the text ends where a value should be", m_pos);
        switch (m_text[m_pos]) {
        case '{': return parse_object(depth + 1);
        case '[': return parse_array(depth + 1);
        case '"': {
            json_value v;
            v.m_kind = json_kind::string;
            parse_string(v.m_string);
            return v;
        }
        case 't':
            if (literal("true")) return json_value(true);
            break;
        case 'f':
            if (literal("false")) return json_value(false);
            break;
        case 'n':
            if (literal("null")) return json_value();
            break;
        default:
            if (m_text[m_pos] == '-' || (m_text[m_pos] >= '0' && m_text[m_pos] <= '9')) return parse_number();
        }
        syntax_error("an unexpected character where a value should be", m_pos);
    }

    void enter(std::size_t depth) const {
        if (depth > max_json_depth)
            fail(m_code, "'{}': JSON nests deeper than {} levels at byte {}", m_source, max_json_depth, m_pos);
    }

    json_value parse_array(std::size_t depth) {
        enter(depth);
        json_value v = json_value::array();
        ++m_pos;
        skip_whitespace();
        if (m_pos < m_text.size() && m_text[m_pos] == ']') {
            ++m_pos;
            return v;
        }
        for (;;) {
            skip_whitespace();
            v.m_items.push_back(parse_value(depth));
            skip_whitespace();
            if (m_pos >= m_text.size()) syntax_error("an array that does not end", m_pos);
            const char c = m_text[m_pos++];
            if (c == ']') return v;
            if (c != ',') syntax_error("a missing ',' or ']' in an array", m_pos - 1);
        }
    }

    json_value parse_object(std::size_t depth) {
        enter(depth);
        const std::size_t start = m_pos;
        json_value v = json_value::object();
        ++m_pos;
        skip_whitespace();
        if (m_pos < m_text.size() && m_text[m_pos] == '}') {
            ++m_pos;
            return v;
        }
        for (;;) {
            skip_whitespace();
            if (m_pos >= m_text.size() || m_text[m_pos] != '"') syntax_error("a member name that is not a string", m_pos);
            std::string key;
            parse_string(key);
            skip_whitespace();
            if (m_pos >= m_text.size() || m_text[m_pos] != ':') syntax_error("a missing ':' after a member name", m_pos);
            ++m_pos;
            skip_whitespace();
            v.m_keys.push_back(std::move(key));
            v.m_items.push_back(parse_value(depth));
            skip_whitespace();
            if (m_pos >= m_text.size()) syntax_error("an object that does not end", m_pos);
            const char c = m_text[m_pos++];
            if (c == '}') break;
            if (c != ',') syntax_error("a missing ',' or '}' in an object", m_pos - 1);
        }
        if (m_duplicates == json_duplicates::refuse)
            if (const std::string* key = repeated_json_key(v))
                fail(m_code, "'{}' is not valid JSON here: the object at byte {} names the key {} twice", m_source,
                     start, detail::json_excerpt<Deferred>(json_value(*key)));
        return v;
    }

    unsigned hex4(std::size_t at) const {
        if (at + 4 > m_text.size()) syntax_error("a \\u escape without four hex digits", at);
        unsigned u = 0;
        for (std::size_t i = at; i < at + 4; ++i) {
            const char c = m_text[i];
            u <<= 4;
            if (c >= '0' && c <= '9') u |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') u |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') u |= static_cast<unsigned>(c - 'A' + 10);
            else syntax_error("a \\u escape without four hex digits", at);
        }
        return u;
    }

    /// A string literal at m_pos (its opening quote) into `out`.
    void parse_string(std::string& out) {
        ++m_pos;
        for (;;) {
            // Plain bytes are copied in runs.
            std::size_t run = m_pos;
            while (run < m_text.size()) {
                const auto c = static_cast<unsigned char>(m_text[run]);
                if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
                ++run;
            }
            out.append(m_text.data() + m_pos, run - m_pos);
            m_pos = run;
            if (m_pos >= m_text.size()) syntax_error("a string that does not end", m_pos);
            const auto c = static_cast<unsigned char>(m_text[m_pos]);
            if (c == '"') {
                ++m_pos;
                return;
            }
            if (c < 0x20) syntax_error("a control character in a string", m_pos);
            if (c >= 0x80) {
                const std::size_t n = detail::utf8_sequence_length(m_text, m_pos);
                if (n == 0) syntax_error("a string that is not UTF-8", m_pos);
                out.append(m_text.data() + m_pos, n);
                m_pos += n;
                continue;
            }
            // A backslash.
            const std::size_t escape = m_pos;
            if (m_pos + 1 >= m_text.size()) syntax_error("a string that does not end", m_pos);
            const char e = m_text[m_pos + 1];
            m_pos += 2;
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                unsigned cp = hex4(m_pos);
                m_pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) syntax_error("a lone low surrogate in a \\u escape", escape);
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (m_text.substr(m_pos, 2) != "\\u")
                        syntax_error("a high surrogate without its low surrogate in a \\u escape", escape);
                    const unsigned low = hex4(m_pos + 2);
                    if (low < 0xDC00 || low > 0xDFFF)
                        syntax_error("a high surrogate without its low surrogate in a \\u escape", escape);
                    m_pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                utf8::append_utf8(out, cp);
                break;
            }
            default: syntax_error("an unknown escape in a string", escape);
            }
        }
    }

    json_value parse_number() {
        const std::size_t start = m_pos;
        const bool negative = m_text[m_pos] == '-';
        if (negative) ++m_pos;
        const auto digit = [&](std::size_t i) { return i < m_text.size() && m_text[i] >= '0' && m_text[i] <= '9'; };
        if (!digit(m_pos)) syntax_error("a number without digits", m_pos);
        // The integer part, accumulated while it fits uint64.
        std::uint64_t magnitude = 0;
        bool fits = true;
        if (m_text[m_pos] == '0') {
            ++m_pos;
            if (digit(m_pos)) syntax_error("a number with a leading zero", start);
        } else {
            for (; digit(m_pos); ++m_pos) {
                const auto d = static_cast<std::uint64_t>(m_text[m_pos] - '0');
                if (magnitude > (std::numeric_limits<std::uint64_t>::max() - d) / 10) fits = false;
                if (fits) magnitude = magnitude * 10 + d;
            }
        }
        bool integer = true;
        if (m_pos < m_text.size() && m_text[m_pos] == '.') {
            integer = false;
            ++m_pos;
            if (!digit(m_pos)) syntax_error("a number without digits after its '.'", m_pos);
            while (digit(m_pos)) ++m_pos;
        }
        if (m_pos < m_text.size() && (m_text[m_pos] == 'e' || m_text[m_pos] == 'E')) {
            integer = false;
            ++m_pos;
            if (m_pos < m_text.size() && (m_text[m_pos] == '+' || m_text[m_pos] == '-')) ++m_pos;
            if (!digit(m_pos)) syntax_error("a number without digits in its exponent", m_pos);
            while (digit(m_pos)) ++m_pos;
        }
        json_value v;
        v.m_kind = json_kind::number;
        constexpr std::uint64_t int64_magnitude = std::uint64_t(1) << 63;
        if (integer && fits && (!negative || magnitude <= int64_magnitude)) {
            v.m_class = negative ? json_number_class::signed_integer : json_number_class::unsigned_integer;
            v.m_bits = magnitude;
            v.m_double = negative ? -static_cast<double>(magnitude) : static_cast<double>(magnitude);
            return v;
        }
        v.m_class = json_number_class::floating;
        const char* first = m_text.data() + start;
        const char* last = m_text.data() + m_pos;
        const auto r = std::from_chars(first, last, v.m_double);
        if (r.ec == std::errc::result_out_of_range) {
            // Too small for a double is a zero (as strtod rounds it); too large is an error, as for
            // nlohmann::json (JSON has no infinities).
            if (beyond_double_range(std::string_view(first, static_cast<std::size_t>(last - first))))
                syntax_error("a number too large for a double", start);
            v.m_double = first[0] == '-' ? -0.0 : 0.0;
        } else if (r.ec != std::errc() || r.ptr != last) {
            syntax_error("a number that does not convert", start);
        }
        return v;
    }

    /// Whether a number that does not convert to a double is too large (rather than too small): the
    /// decimal exponent of its first non-zero digit (its place in the mantissa plus the written
    /// exponent) is positive.
    static bool beyond_double_range(std::string_view number) {
        long long integer_digits = 0, digits = 0, first_nonzero = -1;
        bool seen_point = false;
        std::size_t i = number[0] == '-' ? 1 : 0;
        for (; i < number.size() && number[i] != 'e' && number[i] != 'E'; ++i) {
            if (number[i] == '.') {
                seen_point = true;
                continue;
            }
            if (first_nonzero < 0 && number[i] != '0') first_nonzero = digits;
            ++digits;
            if (!seen_point) ++integer_digits;
        }
        long long exponent = 0;
        if (i < number.size()) {
            ++i;
            bool exponent_negative = false;
            if (number[i] == '+' || number[i] == '-') exponent_negative = number[i++] == '-';
            for (; i < number.size() && exponent < 1000000; ++i) exponent = exponent * 10 + (number[i] - '0');
            if (exponent_negative) exponent = -exponent;
        }
        return first_nonzero >= 0 && integer_digits - 1 - first_nonzero + exponent > 0;
    }

    std::string_view m_text;
    const std::string& m_source;
    errc m_code;
    json_duplicates m_duplicates;
    std::size_t m_pos = 0;
};

/// Parses the JSON document `text`, read from `source` (a file name, for messages). Syntax errors,
/// invalid UTF-8, nesting deeper than max_json_depth and (by default) repeated keys throw
/// actlens::error `code` naming `source` and the byte offset.
template <class Deferred = void>
json_value parse_json(std::string_view text, const std::string& source, errc code,
                      json_duplicates duplicates = json_duplicates::refuse) {
    return json_parser<Deferred>(text, source, code, duplicates).parse_document();
}

} // namespace actlens::io
