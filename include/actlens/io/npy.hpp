// actlens/io/npy.hpp: NumPy .npy files, so that activations and results go to Python and arrays
// come back.
//
// Writes format 1.0 (what np.save writes for every array of rank <= 4); reads 1.0, 2.0 and 3.0.
// Element types: float ('<f4'), double ('<f8'), and signed / unsigned integers of 1, 2, 4 or 8
// bytes ('<i4', '<i8', '|u1', ...). Half precision ('<f2') files are converted on reading into a
// float or double tensor. C order only: a Fortran-ordered file is refused, not transposed.
// A rank-0 array (np.save of a scalar) loads as shape [1].
//
// Every size in a file is validated before memory is touched: a truncated, hostile or malformed
// file gives an actlens::error (io.202 truncated, io.203 bad magic, io.204 malformed header,
// io.205 size overflow, io.206 unsupported dtype / order / rank / version, io.201 open or write
// failure), never a crash.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/mapped_file.hpp>

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error                                                                                             \
    "actlens/io/npy.hpp reads and writes little-endian data and supports little-endian hosts only"
#endif

namespace actlens::io {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// What the header of a .npy file says: dtype string, shape (rank 0 reported as [1]) and where
/// the data starts.
struct npy_info {
    std::string descr;           ///< numpy's dtype string as written, e.g. "<f4"
    shape_t shape;               ///< rank 1..4
    std::size_t data_offset = 0; ///< bytes from the start of the file
    int major_version = 1;       ///< 1, 2 or 3
};

/// The .npy dtype string for T: "<f4" for float, "<f8" for double, "<i4" / "<i8" / "|u1" ... for
/// integers. Other types fail to compile.
template <class T>
std::string npy_descr();

/// Reads and validates the header of `path` without loading the data (for example to choose T).
/// Throws actlens::error as described at the top of this header.
inline npy_info read_npy_info(const std::string& path);

/// Writes `view` to `path` as a format 1.0 .npy file in C order. A strided view is written in
/// logical (row-major index) order, so the file holds what `view(i, j, ...)` shows. Overwrites an
/// existing file. Throws actlens::error (io.201) if the file cannot be created or written, and
/// (arg.101) for a view without rank. Complexity: one pass over the elements.
template <class T>
void save_npy(const std::string& path, tensor_view<const T> view);
/// Overload for views of mutable data.
template <class T>
void save_npy(const std::string& path, tensor_view<T> view);
/// Overload for tensors.
template <class T>
void save_npy(const std::string& path, const tensor<T>& t);

/// Reads `path` into a new tensor. The file's dtype must be T's (see npy_descr), except that '<f2'
/// converts into float or double; any other dtype throws actlens::error (io.206) naming both
/// dtypes. Rank must be 0..4 (0 loads as [1]); Fortran order is refused (io.206).
template <class T>
tensor<T> load_npy(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

inline constexpr char npy_magic[] = "\x93NUMPY";
inline constexpr std::size_t npy_magic_size = 6;

/// A header excerpt safe to print in an error message.
inline std::string npy_printable(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, 160))
        out += (c >= 32 && c < 127) ? c : '?';
    if (text.size() > 160) out += "...";
    return out;
}

/// Recursive-descent parser of the header dictionary, a Python literal such as
/// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }". Keys may come in any order and
/// with either quote; each of the three keys must appear exactly once and no other key may.
class npy_header_parser {
public:
    npy_header_parser(std::string_view text, const std::string& path)
        : m_text(text), m_path(path) {}

    void parse(std::string& descr, bool& fortran_order, std::vector<std::size_t>& shape) {
        bool seen_descr = false, seen_order = false, seen_shape = false;
        skip_space();
        expect('{', "'{'");
        while (true) {
            skip_space();
            if (peek() == '}') break;
            const std::string key = parse_string("a key");
            skip_space();
            expect(':', "':'");
            skip_space();
            if (key == "descr") {
                once(seen_descr, key);
                if (peek() == '[')
                    fail(errc::unsupported_format,
                         "'{}': structured dtypes are not supported (header {})", m_path,
                         npy_printable(m_text));
                descr = parse_string("the dtype string");
            } else if (key == "fortran_order") {
                once(seen_order, key);
                fortran_order = parse_bool();
            } else if (key == "shape") {
                once(seen_shape, key);
                shape = parse_shape();
            } else {
                fail(errc::bad_header, "'{}': unexpected key '{}' in the .npy header {}", m_path,
                     npy_printable(key), npy_printable(m_text));
            }
            skip_space();
            if (peek() == ',') {
                ++m_pos;
                continue;
            }
            if (peek() != '}') error("',' or '}'");
        }
        ++m_pos; // '}'
        skip_space();
        if (m_pos != m_text.size()) error("the end of the header");
        if (!seen_descr || !seen_order || !seen_shape)
            fail(errc::bad_header, "'{}': the .npy header lacks '{}' ({})", m_path,
                 !seen_descr   ? "descr"
                 : !seen_order ? "fortran_order"
                               : "shape",
                 npy_printable(m_text));
    }

private:
    char peek() const noexcept { return m_pos < m_text.size() ? m_text[m_pos] : '\0'; }

    void skip_space() noexcept {
        while (m_pos < m_text.size() && (m_text[m_pos] == ' ' || m_text[m_pos] == '\n' ||
                                         m_text[m_pos] == '\t' || m_text[m_pos] == '\r'))
            ++m_pos;
    }

    [[noreturn]] void error(const char* what) const {
        fail(errc::bad_header, "'{}': malformed .npy header: expected {} at offset {} of {}",
             m_path, what, m_pos, npy_printable(m_text));
    }

    void expect(char c, const char* what) {
        if (peek() != c) error(what);
        ++m_pos;
    }

    void once(bool& seen, const std::string& key) const {
        if (seen)
            fail(errc::bad_header, "'{}': key '{}' appears twice in the .npy header {}", m_path,
                 key, npy_printable(m_text));
        seen = true;
    }

    std::string parse_string(const char* what) {
        const char quote = peek();
        if (quote != '\'' && quote != '"') error(what);
        const std::size_t begin = ++m_pos;
        while (m_pos < m_text.size() && m_text[m_pos] != quote) {
            if (m_text[m_pos] == '\\') error("a string without escapes");
            ++m_pos;
        }
        if (m_pos >= m_text.size()) error("a closing quote");
        return std::string(m_text.substr(begin, m_pos++ - begin));
    }

    bool parse_bool() {
        if (m_text.substr(m_pos, 4) == "True") {
            m_pos += 4;
            return true;
        }
        if (m_text.substr(m_pos, 5) == "False") {
            m_pos += 5;
            return false;
        }
        error("True or False");
    }

    std::size_t parse_extent() {
        if (peek() < '0' || peek() > '9') error("a non-negative integer");
        std::size_t value = 0;
        while (peek() >= '0' && peek() <= '9') {
            const std::size_t digit = std::size_t(peek() - '0');
            if (value > (std::numeric_limits<std::size_t>::max() - digit) / 10)
                fail(errc::size_overflow,
                     "'{}': a shape extent in the .npy header overflows size_t: {}", m_path,
                     npy_printable(m_text));
            value = value * 10 + digit;
            ++m_pos;
        }
        if (peek() == 'L') ++m_pos; // Python 2 long literal in old files
        return value;
    }

    std::vector<std::size_t> parse_shape() {
        std::vector<std::size_t> shape;
        expect('(', "'(' opening the shape");
        skip_space();
        while (peek() != ')') {
            shape.push_back(parse_extent());
            if (shape.size() > std::size_t(max_rank))
                fail(errc::unsupported_format,
                     "'{}': arrays of rank > {} are not supported (header {})", m_path, max_rank,
                     npy_printable(m_text));
            skip_space();
            if (peek() == ',') {
                ++m_pos;
                skip_space();
            } else if (peek() != ')') {
                error("',' or ')' in the shape");
            }
        }
        ++m_pos; // ')'
        return shape;
    }

    std::string_view m_text;
    const std::string& m_path;
    std::size_t m_pos = 0;
};

/// Parses and validates the header at the start of the `size` bytes at `data`.
inline npy_info parse_npy_header(const std::byte* data, std::size_t size, const std::string& path) {
    if (size == 0) fail(errc::file_truncated, "'{}' is empty, not a .npy file", path);
    const std::size_t probe = size < npy_magic_size ? size : npy_magic_size;
    if (std::memcmp(data, npy_magic, probe) != 0)
        fail(errc::bad_magic, "'{}' is not a .npy file (it does not start with \\x93NUMPY)", path);
    byte_reader in(data, size, path);
    in.take(npy_magic_size, "magic");
    const auto major = in.read<std::uint8_t>("major version");
    const auto minor = in.read<std::uint8_t>("minor version");
    if (major < 1 || major > 3 || minor != 0)
        fail(errc::unsupported_format,
             "'{}': .npy format version {}.{} is not supported (1.0, 2.0, 3.0 are)", path, major,
             minor);
    const std::size_t header_len = major == 1
                                       ? std::size_t(in.read<std::uint16_t>("header length"))
                                       : std::size_t(in.read<std::uint32_t>("header length"));
    const auto* header = reinterpret_cast<const char*>(in.take(header_len, "header"));

    npy_info info;
    info.major_version = major;
    info.data_offset = in.offset();
    bool fortran_order = false;
    std::vector<std::size_t> extents;
    npy_header_parser(std::string_view(header, header_len), path)
        .parse(info.descr, fortran_order, extents);
    if (fortran_order)
        fail(errc::unsupported_format,
             "'{}' is stored in Fortran order (fortran_order: True); only C order is supported: "
             "save "
             "np.ascontiguousarray(a) instead",
             path);
    if (extents.empty()) extents.push_back(1); // a numpy scalar
    std::size_t elements = 0;
    if (!addressable_elements(extents.begin(), extents.end(), elements))
        fail(errc::size_overflow,
             "'{}': the .npy header's shape {} has a product (a 0 counted as 1) over {} elements", path,
             npy_printable(std::string_view(header, header_len)), max_tensor_elements);
    info.shape.rank = int(extents.size());
    for (std::size_t a = 0; a < extents.size(); ++a)
        info.shape.extents[a] = extents[a];
    return info;
}

/// Bytes per element of a dtype string such as "<f4" (0 if the string is not of that form).
inline std::size_t npy_itemsize(const std::string& descr) {
    if (descr.size() < 3 || descr.size() > 4) return 0;
    std::size_t n = 0;
    for (std::size_t i = 2; i < descr.size(); ++i) {
        if (descr[i] < '0' || descr[i] > '9') return 0;
        n = n * 10 + std::size_t(descr[i] - '0');
    }
    return n;
}

/// The same dtype up to the byte-order marks that mean "little-endian" here ('<', '=', and '|' for
/// one-byte types).
inline bool npy_same_dtype(const std::string& file, const std::string& wanted) {
    if (file.size() != wanted.size() || file.size() < 2 || file.substr(1) != wanted.substr(1))
        return false;
    const char order = file[0];
    return order == '<' || order == '=' || (order == '|' && npy_itemsize(file) == 1);
}

/// IEEE binary16 to binary32 (exact: every half is a float).
inline float npy_half_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1Fu;
    const std::uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0) { // zero or subnormal: mantissa * 2^-24
        const float magnitude = std::ldexp(float(mantissa), -24);
        return sign ? -magnitude : magnitude;
    }
    const std::uint32_t bits = exponent == 31 ? sign | 0x7F800000u | (mantissa << 13) // inf, NaN
                                              : sign | ((exponent + 112) << 23) | (mantissa << 13);
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

struct npy_file_closer {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

} // namespace detail

template <class T>
std::string npy_descr() {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>,
                  "npy supports float, double and integer element types");
    static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8,
                  "npy element types are 1, 2, 4 or 8 bytes wide");
    static_assert(!std::is_floating_point_v<T> || sizeof(T) == 4 || sizeof(T) == 8,
                  "npy floating-point element types are float and double");
    const char kind = std::is_floating_point_v<T> ? 'f' : std::is_signed_v<T> ? 'i' : 'u';
    std::string descr;
    descr += sizeof(T) == 1 ? '|' : '<';
    descr += kind;
    descr += char('0' + sizeof(T));
    return descr;
}

inline npy_info read_npy_info(const std::string& path) {
    const mapped_file file(path);
    return detail::parse_npy_header(file.data(), file.size(), path);
}

template <class T>
void save_npy(const std::string& path, tensor_view<const T> view) {
    if (view.rank() < 1 || view.rank() > max_rank)
        fail(errc::invalid_argument, "save_npy('{}'): the view has rank {}, not 1..4", path,
             view.rank());
    const std::size_t n = view.size();
    if (n != 0 && view.data() == nullptr)
        fail(errc::invalid_argument, "save_npy('{}'): the view of shape {} has no data", path,
             view.shape().to_string());

    std::string header = "{'descr': '" + npy_descr<T>() + "', 'fortran_order': False, 'shape': (";
    for (int a = 0; a < view.rank(); ++a) {
        header += std::to_string(view.extent(a));
        if (a + 1 < view.rank() || view.rank() == 1) header += ",";
        if (a + 1 < view.rank()) header += " ";
    }
    header += "), }";
    // numpy pads with spaces and a final newline so that the data starts on a 64-byte boundary.
    const std::size_t prefix = detail::npy_magic_size + 2 + 2;
    const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
    header.append(total - prefix - header.size() - 1, ' ');
    header += '\n';

    std::unique_ptr<std::FILE, detail::npy_file_closer> file(std::fopen(path.c_str(), "wb"));
    if (!file)
        fail(errc::file_open, "save_npy: cannot create '{}': {}", path, std::strerror(errno));
    const auto write = [&](const void* p, std::size_t bytes) {
        if (bytes && std::fwrite(p, 1, bytes, file.get()) != bytes)
            fail(errc::file_open, "save_npy: cannot write '{}': {}", path, std::strerror(errno));
    };
    const unsigned char version[2] = {1, 0};
    const auto header_len = static_cast<std::uint16_t>(header.size());
    write(detail::npy_magic, detail::npy_magic_size);
    write(version, 2);
    write(&header_len, 2);
    write(header.data(), header.size());

    if (view.is_contiguous()) {
        write(view.data(), n * sizeof(T));
    } else if (n != 0) {
        // Gather one innermost row at a time; the outer indices run like an odometer, so rows
        // come out in logical (C) order whatever the strides.
        const int last = view.rank() - 1;
        const shape_t& s = view.shape();
        std::vector<T> row(s[last]);
        std::size_t outer_rows = 1;
        for (int a = 0; a < last; ++a)
            outer_rows *= s[a]; // <= n: no overflow
        std::size_t idx[max_rank] = {0, 0, 0, 0};
        for (std::size_t r = 0; r < outer_rows; ++r) {
            std::ptrdiff_t offset = 0;
            for (int a = 0; a < last; ++a)
                offset += std::ptrdiff_t(idx[a]) * view.stride(a);
            const T* base = view.data() + offset;
            for (std::size_t c = 0; c < row.size(); ++c)
                row[c] = base[std::ptrdiff_t(c) * view.stride(last)];
            write(row.data(), row.size() * sizeof(T));
            for (int a = last - 1; a >= 0; --a) {
                if (++idx[a] < s[a]) break;
                idx[a] = 0;
            }
        }
    }
    if (std::fflush(file.get()) != 0)
        fail(errc::file_open, "save_npy: cannot write '{}': {}", path, std::strerror(errno));
    std::FILE* raw = file.release();
    if (std::fclose(raw) != 0)
        fail(errc::file_open, "save_npy: cannot write '{}': {}", path, std::strerror(errno));
}

template <class T>
void save_npy(const std::string& path, tensor_view<T> view) {
    save_npy(path, tensor_view<const T>(view));
}

template <class T>
void save_npy(const std::string& path, const tensor<T>& t) {
    save_npy(path, t.view());
}

template <class T>
tensor<T> load_npy(const std::string& path) {
    const std::string wanted = npy_descr<T>();
    const mapped_file file(path);
    const npy_info info = detail::parse_npy_header(file.data(), file.size(), path);

    const bool half_to_float =
        std::is_floating_point_v<T> && detail::npy_same_dtype(info.descr, "<f2");
    if (!half_to_float && !detail::npy_same_dtype(info.descr, wanted))
        fail(errc::unsupported_format, "'{}' holds dtype '{}', but load_npy was asked for '{}'{}",
             path, detail::npy_printable(info.descr), wanted,
             std::is_floating_point_v<T> ? " (or '<f2', converted)" : "");
    const std::size_t itemsize = half_to_float ? 2 : sizeof(T);

    const std::size_t count = info.shape.elements(); // addressable: parse_npy_header checked it
    const std::size_t bytes = checked_mul(count, itemsize, "array data");
    byte_reader in(file.data(), file.size(), path);
    in.seek(info.data_offset, "data");
    const std::byte* data = in.take(bytes, "data");

    tensor<T> out;
    out.reshape_uninitialized(info.shape);
    if (half_to_float) {
        T* dst = out.data();
        for (std::size_t i = 0; i < count; ++i) {
            std::uint16_t h;
            std::memcpy(&h, data + 2 * i, 2);
            dst[i] = T(detail::npy_half_to_float(h));
        }
    } else if (bytes) {
        std::memcpy(out.data(), data, bytes);
    }
    return out;
}

} // namespace actlens::io
