// actlens/io/gguf.hpp: the GGUF container (ggml / llama.cpp's weight format), versions 2 and 3,
// read and written.
//
// Layout (all little-endian):
//   u32 magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
//   kv x n:          string key, u32 value_type, value
//   tensor_info x n: string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset
//   zero padding to a multiple of ALIGNMENT, then the data section; tensor offsets are relative to
//   its start and multiples of ALIGNMENT ("general.alignment", u32, default 32).
// string = u64 length + bytes (no NUL). Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32,
// 6 f32, 7 bool, 8 string, 9 array (u32 element type, u64 count, elements; arrays nest), 10 u64,
// 11 i64, 12 f64. ne[0] is the contiguous dimension, so a row-major [out, in] matrix has
// ne = [in, out]; actlens shapes are ne reversed.
//
// The reader maps the file and validates the whole header before any tensor byte is read: every
// count and length is checked against the bytes that remain before anything is allocated, arrays
// nest at most gguf_max_depth deep, keys and tensor names are unique, every tensor's ggml type is
// known, ne[0] is a multiple of the type's block (32 for Q8_0), sizes do not overflow, offsets are
// aligned, and tensors lie inside the data section without overlapping. Errors are actlens::error
// naming the file and the field, key or tensor: io.202 (truncated), io.203 (bad magic), io.204
// (malformed header), io.205 (size overflow), io.206 (version 1 or an unknown version, an unknown
// ggml type, a tensor type that cannot be converted to float).
//
// F32, F16, BF16, F64, Q8_0, Q4_0, Q4_K and Q6_K tensors convert to float (the quantised blocks
// decoded as ggml dequantises them, kernels/weight_format.hpp); F32 tensors at 4-byte aligned
// addresses are used in place in the mapping. Every other ggml type (Q5_K, IQ2_XS, ...) is parsed and
// sized but reported as unsupported when its values are asked for.
//
// The writer (gguf_writer) produces version 3 files with metadata of every type and F32, F16 or
// BF16 tensors (rounded to nearest even) or Q8_0 and Q4_0 ones (quantised), each aligned, or tensors of any
// known type given as their encoded bytes (add_tensor_bytes).
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/detail/tensor_bytes.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/kernels/weight_format.hpp>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "actlens/io/gguf.hpp supports little-endian hosts only"
#endif

namespace actlens::io {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// Type of a metadata value, with GGUF's numbering.
enum class gguf_type : std::uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};

/// GGUF's name of a metadata type ("u32", "string", ...); "?" for a number outside the set.
inline const char* gguf_type_name(gguf_type t) noexcept;

/// Element type of a tensor, with ggml's numbering (ggml.h `enum ggml_type`). Files may hold any
/// of them; the ones actlens converts to float are f32, f16, bf16, f64, q8_0, q4_0, q4_k and q6_k.
enum class ggml_type : std::uint32_t {
    f32 = 0,
    f16 = 1,
    q4_0 = 2,
    q4_1 = 3,
    q5_0 = 6,
    q5_1 = 7,
    q8_0 = 8,
    q8_1 = 9,
    q2_k = 10,
    q3_k = 11,
    q4_k = 12,
    q5_k = 13,
    q6_k = 14,
    q8_k = 15,
    iq2_xxs = 16,
    iq2_xs = 17,
    iq3_xxs = 18,
    iq1_s = 19,
    iq4_nl = 20,
    iq3_s = 21,
    iq2_s = 22,
    iq4_xs = 23,
    i8 = 24,
    i16 = 25,
    i32 = 26,
    i64 = 27,
    f64 = 28,
    iq1_m = 29,
    bf16 = 30,
    tq1_0 = 34,
    tq2_0 = 35,
    mxfp4 = 39,
};

/// Block layout of a ggml type: `block` elements take `bytes` bytes.
struct ggml_type_traits {
    const char* name = nullptr; ///< nullptr for a number ggml does not define
    std::size_t block = 0;
    std::size_t bytes = 0;
};

/// The layout of `t`; name is nullptr when `t` is not a type actlens knows.
inline ggml_type_traits ggml_traits(ggml_type t) noexcept;

/// The weight format of a ggml type whose rows the kernels read in place (F32, F16, BF16, Q8_0,
/// Q4_0, Q4_K, Q6_K; kernels/gemm_rows.hpp): true and `format` set, else false.
inline bool ggml_weight_format(ggml_type t, kernels::weight_format& format) noexcept;

/// The largest nesting of arrays accepted (an array of arrays is depth 2).
inline constexpr int gguf_max_depth = 8;
/// The longest key or tensor name accepted, in bytes (the spec's limit for keys).
inline constexpr std::size_t gguf_max_name = 65535;

/// One metadata value: a scalar, a string, or an array of values of one type. Arrays of numbers
/// and bools keep their file bytes (one byte per u8, not one object), so a value's memory stays
/// within a small multiple of its size in the file.
class gguf_value {
public:
    gguf_value() = default;

    // Typed constructors (also what the writer takes).
    static gguf_value u8(std::uint8_t v) { return scalar(gguf_type::u8, &v); }
    static gguf_value i8(std::int8_t v) { return scalar(gguf_type::i8, &v); }
    static gguf_value u16(std::uint16_t v) { return scalar(gguf_type::u16, &v); }
    static gguf_value i16(std::int16_t v) { return scalar(gguf_type::i16, &v); }
    static gguf_value u32(std::uint32_t v) { return scalar(gguf_type::u32, &v); }
    static gguf_value i32(std::int32_t v) { return scalar(gguf_type::i32, &v); }
    static gguf_value u64(std::uint64_t v) { return scalar(gguf_type::u64, &v); }
    static gguf_value i64(std::int64_t v) { return scalar(gguf_type::i64, &v); }
    static gguf_value f32(float v) { return scalar(gguf_type::f32, &v); }
    static gguf_value f64(double v) { return scalar(gguf_type::f64, &v); }
    static gguf_value boolean(bool v) {
        const std::uint8_t b = v ? 1 : 0;
        return scalar(gguf_type::boolean, &b);
    }
    static gguf_value string(std::string v) {
        gguf_value g;
        g.m_type = gguf_type::string;
        g.m_string = std::move(v);
        return g;
    }
    /// An array whose items all have type `element` (arrays of arrays allowed). Throws arg.101 if an
    /// item has another type.
    static gguf_value array(gguf_type element, const std::vector<gguf_value>& items);
    /// Arrays of common element types.
    static gguf_value string_array(std::vector<std::string> items);
    static gguf_value f32_array(const std::vector<float>& items);
    static gguf_value i32_array(const std::vector<std::int32_t>& items);

    gguf_type type() const noexcept { return m_type; }
    bool is_array() const noexcept { return m_type == gguf_type::array; }
    bool is_string() const noexcept { return m_type == gguf_type::string; }
    bool is_integer() const noexcept;
    bool is_float() const noexcept { return m_type == gguf_type::f32 || m_type == gguf_type::f64; }

    /// The value of an integer or bool as u64; throws arg.101 (naming `what`) for another type or a
    /// negative value.
    std::uint64_t as_uint(std::string_view what = "value") const;
    /// The value of an integer as i64; throws for another type or a u64 above INT64_MAX.
    std::int64_t as_int(std::string_view what = "value") const;
    /// The value of an f32, f64 or integer as double; throws for another type.
    double as_double(std::string_view what = "value") const;
    bool as_bool(std::string_view what = "value") const;
    const std::string& as_string(std::string_view what = "value") const;

    /// Arrays: element type, number of items, one item (arg.103 past the end), and every item
    /// converted (to_strings: string arrays; to_doubles / to_ints: number arrays, as as_double /
    /// as_int convert). All throw arg.101 for a value that is not such an array.
    gguf_type element_type(std::string_view what = "value") const;
    std::size_t size(std::string_view what = "value") const;
    gguf_value item(std::size_t i, std::string_view what = "value") const;
    std::vector<std::string> to_strings(std::string_view what = "value") const;
    std::vector<double> to_doubles(std::string_view what = "value") const;
    std::vector<std::int64_t> to_ints(std::string_view what = "value") const;

    /// Same type and same contents (floats compared bit for bit).
    bool operator==(const gguf_value& o) const;
    bool operator!=(const gguf_value& o) const { return !(*this == o); }

private:
    friend class gguf_file;
    static gguf_value scalar(gguf_type t, const void* bytes);
    [[noreturn]] void wrong_type(std::string_view what, const char* wanted) const;
    void require_array(std::string_view what) const {
        if (m_type != gguf_type::array) wrong_type(what, "array");
    }

    gguf_type m_type = gguf_type::u8;
    gguf_type m_element = gguf_type::u8;   ///< arrays
    std::uint64_t m_bits = 0;              ///< a scalar's little-endian bytes, zero-extended
    std::string m_string;                  ///< a string
    std::vector<unsigned char> m_raw;      ///< an array of numbers or bools: the file's bytes
    std::vector<std::string> m_strings;    ///< an array of strings
    std::vector<gguf_value> m_items;       ///< an array of arrays
    std::size_t m_count = 0;               ///< array items
};

/// One tensor as a validated GGUF header describes it.
struct gguf_tensor_info {
    std::string name;
    ggml_type type = ggml_type::f32;
    std::vector<std::uint64_t> ne; ///< as written: ne[0] is the contiguous dimension
    std::size_t elements = 0;      ///< product of ne (1 for n_dims = 0)
    std::size_t offset = 0;        ///< from the start of the data section
    std::size_t bytes = 0;

    /// The row-major actlens shape: ne reversed ([1] for n_dims = 0).
    shape_t shape() const;
    /// ne as text, e.g. "[64, 512]".
    std::string ne_string() const;
};

/// Whether the file at `path` starts with the GGUF magic: how the loaders tell a GGUF from other
/// single-file formats. Throws actlens::error when the file cannot be opened.
bool is_gguf_file(const std::string& path);

/// A memory-mapped GGUF file with a validated header. Copies share the mapping; views into it stay
/// valid while any copy, or the pointer keep_alive() returns, lives. Const methods are thread-safe.
class gguf_file {
public:
    /// Maps and validates `path`; throws actlens::error as the top of this header says.
    /// The parser and the converters below are templates (of nothing) so that they are compiled only
    /// in the files that read a GGUF (README "Compile time").
    template <class Deferred = void>
    explicit gguf_file(const std::string& path);

    const std::string& path() const noexcept { return m_file->path(); }
    std::uint32_t version() const noexcept { return m_version; }
    std::size_t alignment() const noexcept { return m_alignment; }
    /// Byte offset of the data section in the file.
    std::size_t data_offset() const noexcept { return m_data_offset; }

    /// Metadata in file order.
    const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return m_metadata; }
    /// The value of `key`, or nullptr.
    const gguf_value* find(std::string_view key) const noexcept;
    bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }
    /// The value of `key`; throws io.204 naming the file and the key when it is absent.
    const gguf_value& value(std::string_view key) const;
    /// Typed reads of a key; throw io.204 naming the file and the key when it is absent or has
    /// another type (see gguf_value::as_uint etc. for what converts).
    std::uint64_t get_uint(std::string_view key) const;
    std::uint64_t get_uint(std::string_view key, std::uint64_t fallback) const;
    double get_double(std::string_view key) const;
    double get_double(std::string_view key, double fallback) const;
    std::string get_string(std::string_view key) const;
    std::string get_string(std::string_view key, const std::string& fallback) const;

    /// Tensors in the order of the header.
    const std::vector<gguf_tensor_info>& tensors() const noexcept { return m_tensors; }
    const gguf_tensor_info* find_tensor(std::string_view name) const noexcept;
    /// The tensor called `name`; throws arg.101 naming the file and the tensor.
    const gguf_tensor_info& tensor_info(std::string_view name) const;
    /// The raw bytes of a tensor of this file (info.bytes of them).
    const std::byte* data(const gguf_tensor_info& info) const noexcept;

    /// True when `name` is F32 at a 4-byte aligned address, so mapped_view() can use it in place.
    bool is_mappable(std::string_view name) const;
    /// An F32 tensor in place; throws io.206 for another type or a misaligned tensor.
    tensor_view<const float> mapped_view(std::string_view name) const;
    /// A converted copy of an F32, F16, BF16, F64, Q8_0, Q4_0, Q4_K or Q6_K tensor; throws io.206 for
    /// other types.
    template <class Deferred = void>
    tensor<float> to_float(std::string_view name) const;
    /// In place when is_mappable(name), else converted into `storage` (which the view then uses).
    template <class Deferred = void>
    tensor_view<const float> float_view(std::string_view name, tensor<float>& storage) const;

    std::shared_ptr<const void> keep_alive() const noexcept { return m_file; }
    void prefetch() const noexcept { m_file->prefetch(); }
    /// Enters every page of the file into the process's page tables now (reading from disk what
    /// the page cache lacks): weights multiplied where they are in the mapping then take no page
    /// fault per 4 KiB in the first forward, which costs ~15 us each on these VMs (2 GB: ~7 s;
    /// populated at once: ~0.1 s). llama.cpp maps with MAP_POPULATE for the same reason.
    void populate() const noexcept { m_file->populate(); }

private:
    template <class Deferred>
    void parse();
    template <class Deferred>
    gguf_value read_value(byte_reader& in, gguf_type type, const std::string& key, int depth);
    template <class Deferred>
    std::string read_string(byte_reader& in, const char* field, const std::string& context);
    template <class Deferred>
    void convert(const gguf_tensor_info& info, float* out) const;

    std::shared_ptr<const mapped_file> m_file;
    std::uint32_t m_version = 0;
    std::size_t m_alignment = 32;
    std::size_t m_data_offset = 0;
    std::vector<std::pair<std::string, gguf_value>> m_metadata;
    std::map<std::string, std::size_t, std::less<>> m_key_index;
    std::vector<gguf_tensor_info> m_tensors;
    std::map<std::string, std::size_t, std::less<>> m_tensor_index;
};

/// Builds a GGUF version 3 file in memory and writes it. Metadata keys and tensor names keep the
/// order they were added in. Tensor values are copied (converted) when added.
class gguf_writer {
public:
    /// `alignment` (a power of two) is written as "general.alignment" when it is not 32.
    explicit gguf_writer(std::size_t alignment = 32);

    /// Adds a metadata entry; throws arg.101 for an empty or duplicate key, or "general.alignment"
    /// (set by the constructor).
    template <class Deferred = void>
    gguf_writer& set(const std::string& key, gguf_value value);
    /// Adds a tensor of type F32, F16 or BF16 (rounded to nearest even), or Q8_0 or Q4_0 (blocks of 32
    /// along the last axis, quantised as llama.cpp's reference quantize_row_q8_0 / _q4_0 do), with the
    /// view's shape (ne is the shape reversed). Throws arg.101 for another type, an empty or duplicate
    /// name, an empty view, quantised rows whose length is not a multiple of 32, or a value that is
    /// not finite in them.
    template <class Deferred = void>
    gguf_writer& add_tensor(const std::string& name, tensor_view<const float> values,
                            ggml_type type = ggml_type::f32);
    /// Adds a tensor of `shape` (ne is the shape reversed) and any known ggml type from its encoded
    /// bytes (e.g. quantised blocks made elsewhere), copied. Throws arg.101 for an unknown type, an
    /// empty or duplicate name, a last extent that is not a multiple of the type's block, or a byte
    /// count that is not the shape's.
    template <class Deferred = void>
    gguf_writer& add_tensor_bytes(const std::string& name, ggml_type type, const shape_t& shape,
                                  const void* bytes, std::size_t count);
    /// Writes the file (under a temporary name, then renamed); throws io.201 when it cannot.
    template <class Deferred = void>
    void write(const std::string& path) const;

private:
    // Throws arg.101 for an empty, too long or duplicate tensor name.
    template <class Deferred>
    void check_new_tensor(const std::string& name) const;

    struct pending_tensor {
        std::string name;
        ggml_type type;
        std::vector<std::uint64_t> ne;
        std::vector<unsigned char> bytes;
    };
    std::size_t m_alignment;
    std::vector<std::pair<std::string, gguf_value>> m_metadata;
    std::vector<pending_tensor> m_tensors;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline const char* gguf_type_name(gguf_type t) noexcept {
    switch (t) {
    case gguf_type::u8: return "u8";
    case gguf_type::i8: return "i8";
    case gguf_type::u16: return "u16";
    case gguf_type::i16: return "i16";
    case gguf_type::u32: return "u32";
    case gguf_type::i32: return "i32";
    case gguf_type::f32: return "f32";
    case gguf_type::boolean: return "bool";
    case gguf_type::string: return "string";
    case gguf_type::array: return "array";
    case gguf_type::u64: return "u64";
    case gguf_type::i64: return "i64";
    case gguf_type::f64: return "f64";
    }
    return "?";
}

inline ggml_type_traits ggml_traits(ggml_type t) noexcept {
    // Block sizes and bytes per block, from ggml's type table (QK_K = 256).
    switch (t) {
    case ggml_type::f32: return {"F32", 1, 4};
    case ggml_type::f16: return {"F16", 1, 2};
    case ggml_type::q4_0: return {"Q4_0", 32, 18};
    case ggml_type::q4_1: return {"Q4_1", 32, 20};
    case ggml_type::q5_0: return {"Q5_0", 32, 22};
    case ggml_type::q5_1: return {"Q5_1", 32, 24};
    case ggml_type::q8_0: return {"Q8_0", 32, 34};
    case ggml_type::q8_1: return {"Q8_1", 32, 36};
    case ggml_type::q2_k: return {"Q2_K", 256, 84};
    case ggml_type::q3_k: return {"Q3_K", 256, 110};
    case ggml_type::q4_k: return {"Q4_K", 256, 144};
    case ggml_type::q5_k: return {"Q5_K", 256, 176};
    case ggml_type::q6_k: return {"Q6_K", 256, 210};
    case ggml_type::q8_k: return {"Q8_K", 256, 292};
    case ggml_type::iq2_xxs: return {"IQ2_XXS", 256, 66};
    case ggml_type::iq2_xs: return {"IQ2_XS", 256, 74};
    case ggml_type::iq3_xxs: return {"IQ3_XXS", 256, 98};
    case ggml_type::iq1_s: return {"IQ1_S", 256, 50};
    case ggml_type::iq4_nl: return {"IQ4_NL", 32, 18};
    case ggml_type::iq3_s: return {"IQ3_S", 256, 110};
    case ggml_type::iq2_s: return {"IQ2_S", 256, 82};
    case ggml_type::iq4_xs: return {"IQ4_XS", 256, 136};
    case ggml_type::i8: return {"I8", 1, 1};
    case ggml_type::i16: return {"I16", 1, 2};
    case ggml_type::i32: return {"I32", 1, 4};
    case ggml_type::i64: return {"I64", 1, 8};
    case ggml_type::f64: return {"F64", 1, 8};
    case ggml_type::iq1_m: return {"IQ1_M", 256, 56};
    case ggml_type::bf16: return {"BF16", 1, 2};
    case ggml_type::tq1_0: return {"TQ1_0", 256, 54};
    case ggml_type::tq2_0: return {"TQ2_0", 256, 66};
    case ggml_type::mxfp4: return {"MXFP4", 32, 17};
    }
    return {};
}

inline bool ggml_weight_format(ggml_type t, kernels::weight_format& format) noexcept {
    using kernels::weight_format;
    switch (t) {
    case ggml_type::f32: format = weight_format::f32; return true;
    case ggml_type::f16: format = weight_format::f16; return true;
    case ggml_type::bf16: format = weight_format::bf16; return true;
    case ggml_type::q8_0: format = weight_format::q8_0; return true;
    case ggml_type::q4_0: format = weight_format::q4_0; return true;
    case ggml_type::q4_k: format = weight_format::q4_k; return true;
    case ggml_type::q6_k: format = weight_format::q6_k; return true;
    default: return false;
    }
}

namespace detail {

/// Bytes of one scalar of a metadata type (0 for string and array).
inline std::size_t gguf_scalar_size(gguf_type t) noexcept {
    switch (t) {
    case gguf_type::u8:
    case gguf_type::i8:
    case gguf_type::boolean: return 1;
    case gguf_type::u16:
    case gguf_type::i16: return 2;
    case gguf_type::u32:
    case gguf_type::i32:
    case gguf_type::f32: return 4;
    case gguf_type::u64:
    case gguf_type::i64:
    case gguf_type::f64: return 8;
    default: return 0;
    }
}

inline bool gguf_is_signed(gguf_type t) noexcept {
    return t == gguf_type::i8 || t == gguf_type::i16 || t == gguf_type::i32 || t == gguf_type::i64;
}

} // namespace detail

inline gguf_value gguf_value::scalar(gguf_type t, const void* bytes) {
    gguf_value g;
    g.m_type = t;
    std::memcpy(&g.m_bits, bytes, detail::gguf_scalar_size(t));
    return g;
}

inline gguf_value gguf_value::array(gguf_type element, const std::vector<gguf_value>& items) {
    if (gguf_type_name(element)[0] == '?')
        fail(errc::invalid_argument, "gguf_value::array: element type {} is not a GGUF type",
             static_cast<std::uint32_t>(element));
    for (std::size_t i = 0; i < items.size(); ++i)
        if (items[i].type() != element)
            fail(errc::invalid_argument,
                 "gguf_value::array: item {} has type {}, but the array holds {}", i,
                 gguf_type_name(items[i].type()), gguf_type_name(element));
    gguf_value g;
    g.m_type = gguf_type::array;
    g.m_element = element;
    g.m_count = items.size();
    const std::size_t width = detail::gguf_scalar_size(element);
    if (element == gguf_type::string)
        for (const gguf_value& v : items) g.m_strings.push_back(v.m_string);
    else if (element == gguf_type::array)
        g.m_items = items;
    else
        for (const gguf_value& v : items) {
            const auto* p = reinterpret_cast<const unsigned char*>(&v.m_bits);
            g.m_raw.insert(g.m_raw.end(), p, p + width);
        }
    return g;
}

inline gguf_value gguf_value::string_array(std::vector<std::string> items) {
    gguf_value g;
    g.m_type = gguf_type::array;
    g.m_element = gguf_type::string;
    g.m_count = items.size();
    g.m_strings = std::move(items);
    return g;
}

inline gguf_value gguf_value::f32_array(const std::vector<float>& items) {
    gguf_value g;
    g.m_type = gguf_type::array;
    g.m_element = gguf_type::f32;
    g.m_count = items.size();
    g.m_raw.resize(items.size() * sizeof(float));
    if (!items.empty()) std::memcpy(g.m_raw.data(), items.data(), g.m_raw.size());
    return g;
}

inline gguf_value gguf_value::i32_array(const std::vector<std::int32_t>& items) {
    gguf_value g;
    g.m_type = gguf_type::array;
    g.m_element = gguf_type::i32;
    g.m_count = items.size();
    g.m_raw.resize(items.size() * sizeof(std::int32_t));
    if (!items.empty()) std::memcpy(g.m_raw.data(), items.data(), g.m_raw.size());
    return g;
}

inline bool gguf_value::is_integer() const noexcept {
    switch (m_type) {
    case gguf_type::u8:
    case gguf_type::i8:
    case gguf_type::u16:
    case gguf_type::i16:
    case gguf_type::u32:
    case gguf_type::i32:
    case gguf_type::u64:
    case gguf_type::i64: return true;
    default: return false;
    }
}

inline void gguf_value::wrong_type(std::string_view what, const char* wanted) const {
    fail(errc::invalid_argument, "{} has GGUF type {}, expected {}", what, gguf_type_name(m_type),
         wanted);
}

namespace detail {
/// A signed scalar's value from its zero-extended bytes.
inline std::int64_t gguf_signed(gguf_type t, std::uint64_t bits) noexcept {
    switch (t) {
    case gguf_type::i8: return static_cast<std::int8_t>(bits);
    case gguf_type::i16: return static_cast<std::int16_t>(bits);
    case gguf_type::i32: return static_cast<std::int32_t>(bits);
    default: return static_cast<std::int64_t>(bits);
    }
}
} // namespace detail

inline std::uint64_t gguf_value::as_uint(std::string_view what) const {
    if (m_type == gguf_type::boolean) return m_bits;
    if (!is_integer()) wrong_type(what, "an integer");
    if (detail::gguf_is_signed(m_type)) {
        const std::int64_t v = detail::gguf_signed(m_type, m_bits);
        if (v < 0) fail(errc::invalid_argument, "{} = {} must not be negative", what, v);
        return static_cast<std::uint64_t>(v);
    }
    return m_bits;
}

inline std::int64_t gguf_value::as_int(std::string_view what) const {
    if (!is_integer()) wrong_type(what, "an integer");
    if (detail::gguf_is_signed(m_type)) return detail::gguf_signed(m_type, m_bits);
    if (m_bits > static_cast<std::uint64_t>(INT64_MAX))
        fail(errc::invalid_argument, "{} = {} does not fit in a signed 64-bit integer", what, m_bits);
    return static_cast<std::int64_t>(m_bits);
}

inline double gguf_value::as_double(std::string_view what) const {
    if (m_type == gguf_type::f32) {
        float f;
        std::memcpy(&f, &m_bits, sizeof f);
        return f;
    }
    if (m_type == gguf_type::f64) {
        double d;
        std::memcpy(&d, &m_bits, sizeof d);
        return d;
    }
    if (is_integer())
        return detail::gguf_is_signed(m_type) ? static_cast<double>(detail::gguf_signed(m_type, m_bits))
                                              : static_cast<double>(m_bits);
    wrong_type(what, "a number");
}

inline bool gguf_value::as_bool(std::string_view what) const {
    if (m_type != gguf_type::boolean) wrong_type(what, "bool");
    return m_bits != 0;
}

inline const std::string& gguf_value::as_string(std::string_view what) const {
    if (m_type != gguf_type::string) wrong_type(what, "string");
    return m_string;
}

inline gguf_type gguf_value::element_type(std::string_view what) const {
    require_array(what);
    return m_element;
}

inline std::size_t gguf_value::size(std::string_view what) const {
    require_array(what);
    return m_count;
}

inline gguf_value gguf_value::item(std::size_t i, std::string_view what) const {
    require_array(what);
    if (i >= m_count)
        fail(errc::out_of_range, "{}: item {} of an array of {}", what, i, m_count);
    if (m_element == gguf_type::string) return string(m_strings[i]);
    if (m_element == gguf_type::array) return m_items[i];
    const std::size_t width = detail::gguf_scalar_size(m_element);
    return scalar(m_element, m_raw.data() + i * width);
}

inline std::vector<std::string> gguf_value::to_strings(std::string_view what) const {
    require_array(what);
    if (m_element != gguf_type::string && m_count != 0)
        fail(errc::invalid_argument, "{} is an array of {}, expected an array of strings", what,
             gguf_type_name(m_element));
    return m_strings;
}

inline std::vector<double> gguf_value::to_doubles(std::string_view what) const {
    require_array(what);
    std::vector<double> out(m_count);
    for (std::size_t i = 0; i < m_count; ++i) out[i] = item(i).as_double(what);
    return out;
}

inline std::vector<std::int64_t> gguf_value::to_ints(std::string_view what) const {
    require_array(what);
    std::vector<std::int64_t> out(m_count);
    for (std::size_t i = 0; i < m_count; ++i) out[i] = item(i).as_int(what);
    return out;
}

inline bool gguf_value::operator==(const gguf_value& o) const {
    if (m_type != o.m_type) return false;
    if (m_type == gguf_type::string) return m_string == o.m_string;
    if (m_type == gguf_type::array)
        return m_element == o.m_element && m_count == o.m_count && m_raw == o.m_raw &&
               m_strings == o.m_strings && m_items == o.m_items;
    return m_bits == o.m_bits;
}

inline shape_t gguf_tensor_info::shape() const {
    if (ne.empty()) return shape_t{1};
    shape_t s;
    s.rank = static_cast<int>(ne.size());
    for (std::size_t i = 0; i < ne.size(); ++i)
        s.extents[i] = static_cast<std::size_t>(ne[ne.size() - 1 - i]);
    return s;
}

inline std::string gguf_tensor_info::ne_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

template <class Deferred>
gguf_file::gguf_file(const std::string& path)
    : m_file(std::make_shared<const mapped_file>(path)) {
    parse<Deferred>();
}

template <class Deferred>
std::string gguf_file::read_string(byte_reader& in, const char* field, const std::string& context) {
    const auto length = in.read<std::uint64_t>(field);
    // Checked against the bytes left before anything is allocated: a hostile length fails here.
    if (length > in.remaining())
        fail(errc::file_truncated,
             "'{}' is truncated: {} of {} has length {} at offset {}, but only {} bytes remain",
             path(), field, context, length, in.offset() - 8, in.remaining());
    const auto* p = reinterpret_cast<const char*>(in.take(static_cast<std::size_t>(length), field));
    return std::string(p, static_cast<std::size_t>(length));
}

template <class Deferred>
gguf_value gguf_file::read_value(byte_reader& in, gguf_type type, const std::string& key, int depth) {
    const char* field = "metadata value";
    switch (type) {
    case gguf_type::u8: return gguf_value::u8(in.read<std::uint8_t>(field));
    case gguf_type::i8: return gguf_value::i8(in.read<std::int8_t>(field));
    case gguf_type::u16: return gguf_value::u16(in.read<std::uint16_t>(field));
    case gguf_type::i16: return gguf_value::i16(in.read<std::int16_t>(field));
    case gguf_type::u32: return gguf_value::u32(in.read<std::uint32_t>(field));
    case gguf_type::i32: return gguf_value::i32(in.read<std::int32_t>(field));
    case gguf_type::u64: return gguf_value::u64(in.read<std::uint64_t>(field));
    case gguf_type::i64: return gguf_value::i64(in.read<std::int64_t>(field));
    case gguf_type::f32: return gguf_value::f32(in.read<float>(field));
    case gguf_type::f64: return gguf_value::f64(in.read<double>(field));
    case gguf_type::boolean: {
        const auto b = in.read<std::uint8_t>(field);
        if (b > 1)
            fail(errc::bad_header, "'{}': metadata '{}' is a bool with the byte {} (not 0 or 1)",
                 path(), key, b);
        return gguf_value::boolean(b != 0);
    }
    case gguf_type::string: return gguf_value::string(read_string<Deferred>(in, "string value", "'" + key + "'"));
    case gguf_type::array: {
        if (depth >= gguf_max_depth)
            fail(errc::bad_header, "'{}': metadata '{}' nests arrays more than {} deep", path(),
                 key, gguf_max_depth);
        const auto raw = in.read<std::uint32_t>("array element type");
        const auto element = static_cast<gguf_type>(raw);
        if (raw > static_cast<std::uint32_t>(gguf_type::f64))
            fail(errc::bad_header, "'{}': metadata '{}' is an array of unknown value type {}",
                 path(), key, raw);
        const auto count = in.read<std::uint64_t>("array count");
        // The smallest encoding of one element bounds the count by the bytes that remain, so a
        // hostile count fails before the vector is reserved.
        std::size_t smallest = 1;
        switch (element) {
        case gguf_type::u16:
        case gguf_type::i16: smallest = 2; break;
        case gguf_type::u32:
        case gguf_type::i32:
        case gguf_type::f32: smallest = 4; break;
        case gguf_type::u64:
        case gguf_type::i64:
        case gguf_type::f64:
        case gguf_type::string: smallest = 8; break;
        case gguf_type::array: smallest = 12; break;
        default: break;
        }
        if (count > in.remaining() / smallest)
            fail(errc::file_truncated,
                 "'{}' is truncated: metadata '{}' is an array of {} {} items, which need at least "
                 "{} bytes, but only {} remain",
                 path(), key, count, gguf_type_name(element),
                 count > SIZE_MAX / smallest ? SIZE_MAX : count * smallest, in.remaining());
        gguf_value g;
        g.m_type = gguf_type::array;
        g.m_element = element;
        g.m_count = static_cast<std::size_t>(count);
        if (element == gguf_type::string) {
            g.m_strings.reserve(g.m_count);
            for (std::size_t i = 0; i < g.m_count; ++i)
                g.m_strings.push_back(read_string<Deferred>(in, "string value", "'" + key + "'"));
        } else if (element == gguf_type::array) {
            g.m_items.reserve(g.m_count);
            for (std::size_t i = 0; i < g.m_count; ++i)
                g.m_items.push_back(read_value<Deferred>(in, element, key, depth + 1));
        } else {
            // Numbers and bools: the bytes as they are (the count was bounded above).
            const std::size_t bytes = g.m_count * smallest;
            const auto* p = reinterpret_cast<const unsigned char*>(in.take(bytes, "array items"));
            if (element == gguf_type::boolean)
                for (std::size_t i = 0; i < bytes; ++i)
                    if (p[i] > 1)
                        fail(errc::bad_header,
                             "'{}': metadata '{}' is a bool array whose item {} has the byte {} "
                             "(not 0 or 1)",
                             path(), key, i, p[i]);
            g.m_raw.assign(p, p + bytes);
        }
        return g;
    }
    }
    fail(errc::bad_header, "'{}': metadata '{}' has unknown value type {}", path(), key,
         static_cast<std::uint32_t>(type));
}

inline bool is_gguf_file(const std::string& path) {
    const mapped_file file(path);
    return file.size() >= 4 && std::memcmp(file.data(), "GGUF", 4) == 0;
}

template <class Deferred>
void gguf_file::parse() {
    const std::string& file = m_file->path();
    byte_reader in(m_file->data(), m_file->size(), file);
    const auto* magic = in.take(4, "magic");
    if (std::memcmp(magic, "GGUF", 4) != 0)
        fail(errc::bad_magic, "'{}' is not a GGUF file: its first 4 bytes are not \"GGUF\"", file);
    m_version = in.read<std::uint32_t>("version");
    if (m_version == 1)
        fail(errc::unsupported_format,
             "'{}' is GGUF version 1, which actlens does not read (its counts are 32-bit); convert "
             "it to version 3",
             file);
    if (m_version != 2 && m_version != 3)
        fail(errc::unsupported_format, "'{}' has GGUF version {}; actlens reads versions 2 and 3",
             file, m_version);
    if (m_file->size() < 24)
        fail(errc::file_truncated,
             "'{}' is truncated: a GGUF header needs 24 bytes (fields "
             "'tensor_count' and 'metadata_kv_count' end at 24), the file has {}",
             file, m_file->size());
    const auto tensor_count = in.read<std::uint64_t>("tensor_count");
    const auto kv_count = in.read<std::uint64_t>("metadata_kv_count");
    // Bound the counts by the bytes left: a kv takes at least 8 + 4 + 1 bytes, a tensor info
    // 8 + 4 + 4 + 8.
    if (kv_count > in.remaining() / 13)
        fail(errc::file_truncated,
             "'{}' is truncated: metadata_kv_count = {} needs at least {} bytes, {} remain", file,
             kv_count, kv_count > SIZE_MAX / 13 ? SIZE_MAX : kv_count * 13, in.remaining());
    if (tensor_count > in.remaining() / 24)
        fail(errc::file_truncated,
             "'{}' is truncated: tensor_count = {} needs at least {} bytes, {} remain", file,
             tensor_count, tensor_count > SIZE_MAX / 24 ? SIZE_MAX : tensor_count * 24,
             in.remaining());

    m_metadata.reserve(static_cast<std::size_t>(kv_count));
    for (std::uint64_t k = 0; k < kv_count; ++k) {
        const std::string where = fmt::format("metadata entry {}", k);
        std::string key = read_string<Deferred>(in, "key", where);
        if (key.empty() || key.size() > gguf_max_name)
            fail(errc::bad_header, "'{}': {} has a key of length {} (must be 1 to {})", file,
                 where, key.size(), gguf_max_name);
        const auto raw = in.read<std::uint32_t>("value type");
        if (raw > static_cast<std::uint32_t>(gguf_type::f64))
            fail(errc::bad_header, "'{}': metadata '{}' has unknown value type {}", file, key, raw);
        gguf_value v = read_value<Deferred>(in, static_cast<gguf_type>(raw), key, 0);
        if (!m_key_index.emplace(key, m_metadata.size()).second)
            fail(errc::bad_header, "'{}': metadata key '{}' appears twice", file, key);
        m_metadata.emplace_back(std::move(key), std::move(v));
    }

    if (const gguf_value* a = find("general.alignment")) {
        if (a->type() != gguf_type::u32)
            fail(errc::bad_header, "'{}': metadata 'general.alignment' must be u32, got {}", file,
                 gguf_type_name(a->type()));
        const std::uint64_t align = a->as_uint();
        if (align == 0 || (align & (align - 1)) != 0)
            fail(errc::bad_header,
                 "'{}': metadata 'general.alignment' = {} is not a power of two", file, align);
        m_alignment = static_cast<std::size_t>(align);
    }

    m_tensors.reserve(static_cast<std::size_t>(tensor_count));
    for (std::uint64_t t = 0; t < tensor_count; ++t) {
        gguf_tensor_info info;
        info.name = read_string<Deferred>(in, "tensor name", fmt::format("tensor info {}", t));
        if (info.name.empty() || info.name.size() > gguf_max_name)
            fail(errc::bad_header, "'{}': tensor info {} has a name of length {} (must be 1 to {})",
                 file, t, info.name.size(), gguf_max_name);
        const auto n_dims = in.read<std::uint32_t>("n_dims");
        if (n_dims > static_cast<std::uint32_t>(max_rank))
            fail(errc::bad_header, "'{}': tensor '{}' has n_dims = {} (at most {})", file,
                 info.name, n_dims, max_rank);
        for (std::uint32_t i = 0; i < n_dims; ++i) {
            const auto e = in.read<std::uint64_t>("ne");
            if (e > static_cast<std::uint64_t>(INT64_MAX))
                fail(errc::bad_header, "'{}': tensor '{}' has ne[{}] = {}, which is negative as int64",
                     file, info.name, i, e);
            info.ne.push_back(e);
        }
        if (!addressable_elements(info.ne.begin(), info.ne.end(), info.elements))
            fail(errc::size_overflow,
                 "'{}': tensor '{}' has ne {}, whose product (a 0 counted as 1) exceeds {} elements", file,
                 info.name, info.ne_string(), max_tensor_elements);
        const auto raw_type = in.read<std::uint32_t>("ggml_type");
        info.type = static_cast<ggml_type>(raw_type);
        const ggml_type_traits traits = ggml_traits(info.type);
        if (!traits.name)
            fail(errc::unsupported_format, "'{}': tensor '{}' has unknown ggml type {}", file,
                 info.name, raw_type);
        const std::uint64_t row = info.ne.empty() ? 1 : info.ne[0];
        if (row % traits.block != 0)
            fail(errc::bad_header,
                 "'{}': tensor '{}' has type {} and ne {}, but ne[0] = {} is not a multiple of its "
                 "block size {}",
                 file, info.name, traits.name, info.ne_string(), row, traits.block);
        info.bytes = checked_mul(info.elements / traits.block, traits.bytes, "tensor bytes");
        const auto offset = in.read<std::uint64_t>("tensor offset");
        if (offset % m_alignment != 0)
            fail(errc::bad_header, "'{}': tensor '{}' has offset {}, not a multiple of the alignment {}",
                 file, info.name, offset, m_alignment);
        if (offset > SIZE_MAX) fail(errc::size_overflow, "'{}': tensor '{}' offset {} overflows", file, info.name, offset);
        info.offset = static_cast<std::size_t>(offset);
        if (!m_tensor_index.emplace(info.name, m_tensors.size()).second)
            fail(errc::bad_header, "'{}': tensor '{}' appears twice", file, info.name);
        m_tensors.push_back(std::move(info));
    }

    const std::size_t header_end = in.offset();
    const std::size_t padded =
        checked_mul((checked_add(header_end, m_alignment - 1, "header padding")) / m_alignment,
                    m_alignment, "header padding");
    if (m_tensors.empty()) {
        m_data_offset = std::min(padded, m_file->size());
        return;
    }
    if (padded > m_file->size())
        fail(errc::file_truncated,
             "'{}' is truncated: the data section starts at offset {}, past the end ({} bytes)",
             file, padded, m_file->size());
    m_data_offset = padded;
    const std::size_t data_size = m_file->size() - m_data_offset;
    for (const gguf_tensor_info& t : m_tensors) {
        const std::size_t end = checked_add(t.offset, t.bytes, "tensor end");
        if (end > data_size)
            fail(errc::file_truncated,
                 "'{}' is truncated: tensor '{}' ({} {}, {} bytes at data offset {}) extends past the "
                 "end of the data section ({} bytes)",
                 file, t.name, ggml_traits(t.type).name, t.ne_string(), t.bytes, t.offset, data_size);
    }
    std::vector<detail::byte_range> ranges;
    ranges.reserve(m_tensors.size());
    for (const gguf_tensor_info& t : m_tensors) ranges.push_back({t.name, t.offset, t.offset + t.bytes});
    detail::check_no_overlap(file, std::move(ranges));
}

inline const gguf_value* gguf_file::find(std::string_view key) const noexcept {
    const auto it = m_key_index.find(key);
    return it == m_key_index.end() ? nullptr : &m_metadata[it->second].second;
}

inline const gguf_value& gguf_file::value(std::string_view key) const {
    const gguf_value* v = find(key);
    if (!v) fail(errc::bad_header, "'{}' has no metadata key '{}'", path(), key);
    return *v;
}

namespace detail {
/// Runs a typed read of a metadata value, re-throwing its error as io.204 naming the file.
template <class F>
auto gguf_typed(const std::string& file, F&& read) {
    try {
        return read();
    } catch (const error& e) {
        if (e.code() != errc::invalid_argument) throw;
        const std::string what = e.what();
        const std::size_t close = what.find("] ");
        fail(errc::bad_header, "'{}': {}", file,
             close == std::string::npos ? what : what.substr(close + 2));
    }
}
} // namespace detail

inline std::uint64_t gguf_file::get_uint(std::string_view key) const {
    const gguf_value& v = value(key);
    return detail::gguf_typed(path(), [&] { return v.as_uint(fmt::format("metadata '{}'", key)); });
}
inline std::uint64_t gguf_file::get_uint(std::string_view key, std::uint64_t fallback) const {
    return contains(key) ? get_uint(key) : fallback;
}
inline double gguf_file::get_double(std::string_view key) const {
    const gguf_value& v = value(key);
    return detail::gguf_typed(path(), [&] { return v.as_double(fmt::format("metadata '{}'", key)); });
}
inline double gguf_file::get_double(std::string_view key, double fallback) const {
    return contains(key) ? get_double(key) : fallback;
}
inline std::string gguf_file::get_string(std::string_view key) const {
    const gguf_value& v = value(key);
    return detail::gguf_typed(path(), [&] { return v.as_string(fmt::format("metadata '{}'", key)); });
}
inline std::string gguf_file::get_string(std::string_view key, const std::string& fallback) const {
    return contains(key) ? get_string(key) : fallback;
}

inline const gguf_tensor_info* gguf_file::find_tensor(std::string_view name) const noexcept {
    const auto it = m_tensor_index.find(name);
    return it == m_tensor_index.end() ? nullptr : &m_tensors[it->second];
}

inline const gguf_tensor_info& gguf_file::tensor_info(std::string_view name) const {
    const gguf_tensor_info* t = find_tensor(name);
    if (!t) fail(errc::invalid_argument, "'{}' has no tensor '{}'", path(), name);
    return *t;
}

inline const std::byte* gguf_file::data(const gguf_tensor_info& info) const noexcept {
    return m_file->data() + m_data_offset + info.offset;
}

inline bool gguf_file::is_mappable(std::string_view name) const {
    const gguf_tensor_info& t = tensor_info(name);
    return t.type == ggml_type::f32 && detail::float_aligned(data(t));
}

inline tensor_view<const float> gguf_file::mapped_view(std::string_view name) const {
    const gguf_tensor_info& t = tensor_info(name);
    if (!is_mappable(name))
        fail(errc::unsupported_format,
             "'{}': tensor '{}' has type {}{}; only aligned F32 tensors can be used in place", path(),
             t.name, ggml_traits(t.type).name, t.type == ggml_type::f32 ? " but is misaligned" : "");
    return tensor_view<const float>(reinterpret_cast<const float*>(data(t)), t.shape());
}

template <class Deferred>
void gguf_file::convert(const gguf_tensor_info& t, float* out) const {
    const std::byte* p = data(t);
    const std::size_t n = t.elements;
    if (n == 0) return;
    switch (t.type) {
    case ggml_type::f32: std::memcpy(out, p, n * sizeof(float)); return;
    case ggml_type::f64: detail::f64_bytes_to_f32(p, out, n); return;
    case ggml_type::f16:
    case ggml_type::bf16:
        // Offsets are multiples of the alignment, but a file's alignment may be 1.
        detail::half_bytes_to_f32(p, out, n, t.type == ggml_type::bf16);
        return;
    case ggml_type::q8_0:
    case ggml_type::q4_0:
    case ggml_type::q4_k:
    case ggml_type::q6_k: {
        kernels::weight_format format{};
        ggml_weight_format(t.type, format);
        // Blocks follow each other along the rows and the rows along the tensor: one run of blocks.
        kernels::decode_values(format, reinterpret_cast<const unsigned char*>(p), 0, n, out);
        return;
    }
    default:
        fail(errc::unsupported_format,
             "'{}': tensor '{}' has type {}; actlens converts F32, F16, BF16, F64, Q8_0, Q4_0, Q4_K and Q6_K to float",
             path(), t.name, ggml_traits(t.type).name);
    }
}

template <class Deferred>
tensor<float> gguf_file::to_float(std::string_view name) const {
    const gguf_tensor_info& t = tensor_info(name);
    const ggml_type ty = t.type;
    kernels::weight_format format{};
    if (ty != ggml_type::f64 && !ggml_weight_format(ty, format))
        fail(errc::unsupported_format,
             "'{}': tensor '{}' has type {}; actlens converts F32, F16, BF16, F64, Q8_0, Q4_0, Q4_K and Q6_K to float",
             path(), t.name, ggml_traits(ty).name);
    tensor<float> out;
    out.reshape_uninitialized(t.shape());
    convert<Deferred>(t, out.data());
    return out;
}

template <class Deferred>
tensor_view<const float> gguf_file::float_view(std::string_view name, tensor<float>& storage) const {
    if (is_mappable(name)) return mapped_view(name);
    storage = to_float<Deferred>(name);
    return static_cast<const tensor<float>&>(storage).view();
}

inline gguf_writer::gguf_writer(std::size_t alignment) : m_alignment(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > UINT32_MAX)
        fail(errc::invalid_argument, "gguf_writer: alignment {} is not a power of two", alignment);
    if (alignment != 32)
        m_metadata.emplace_back("general.alignment", gguf_value::u32(static_cast<std::uint32_t>(alignment)));
}

template <class Deferred>
gguf_writer& gguf_writer::set(const std::string& key, gguf_value value) {
    if (key.empty() || key.size() > gguf_max_name)
        fail(errc::invalid_argument, "gguf_writer::set: key of length {} (must be 1 to {})", key.size(),
             gguf_max_name);
    if (key == "general.alignment")
        fail(errc::invalid_argument,
             "gguf_writer::set: 'general.alignment' is set by the writer's constructor");
    for (const auto& kv : m_metadata)
        if (kv.first == key) fail(errc::invalid_argument, "gguf_writer::set: key '{}' is set twice", key);
    m_metadata.emplace_back(key, std::move(value));
    return *this;
}

template <class Deferred>
void gguf_writer::check_new_tensor(const std::string& name) const {
    if (name.empty() || name.size() > gguf_max_name)
        fail(errc::invalid_argument, "gguf_writer::add_tensor: name of length {} (must be 1 to {})",
             name.size(), gguf_max_name);
    for (const pending_tensor& t : m_tensors)
        if (t.name == name)
            fail(errc::invalid_argument, "gguf_writer::add_tensor: tensor '{}' is added twice", name);
}

template <class Deferred>
gguf_writer& gguf_writer::add_tensor_bytes(const std::string& name, ggml_type type, const shape_t& shape,
                                                  const void* bytes, std::size_t count) {
    const ggml_type_traits traits = ggml_traits(type);
    if (!traits.name)
        fail(errc::invalid_argument, "gguf_writer::add_tensor_bytes('{}'): unknown ggml type {}", name,
             static_cast<std::uint32_t>(type));
    check_new_tensor<Deferred>(name);
    if (shape.rank < 1 || shape.elements() == 0 || shape[shape.rank - 1] % traits.block != 0)
        fail(errc::invalid_argument,
             "gguf_writer::add_tensor_bytes('{}'): shape {} is empty or its rows are not whole {} blocks of {}", name,
             shape.to_string(), traits.name, traits.block);
    const std::size_t want = shape.elements() / traits.block * traits.bytes;
    if (count != want)
        fail(errc::invalid_argument, "gguf_writer::add_tensor_bytes('{}'): {} bytes given, a {} {} takes {}", name,
             count, shape.to_string(), traits.name, want);
    pending_tensor t;
    t.name = name;
    t.type = type;
    for (int a = shape.rank - 1; a >= 0; --a) t.ne.push_back(shape[a]);
    const auto* b = static_cast<const unsigned char*>(bytes);
    t.bytes.assign(b, b + count);
    m_tensors.push_back(std::move(t));
    return *this;
}

template <class Deferred>
gguf_writer& gguf_writer::add_tensor(const std::string& name, tensor_view<const float> values,
                                            ggml_type type) {
    const bool quantised = type == ggml_type::q8_0 || type == ggml_type::q4_0;
    if (type != ggml_type::f32 && type != ggml_type::f16 && type != ggml_type::bf16 && !quantised)
        fail(errc::invalid_argument,
             "gguf_writer::add_tensor('{}'): type {} is not one of F32, F16, BF16, Q8_0, Q4_0", name,
             ggml_traits(type).name ? ggml_traits(type).name : "?");
    check_new_tensor<Deferred>(name);
    if (values.rank() < 1 || values.data() == nullptr || values.size() == 0)
        fail(errc::invalid_argument, "gguf_writer::add_tensor('{}'): the view is empty", name);
    if (quantised && values.extent(values.rank() - 1) % 32 != 0)
        fail(errc::invalid_argument,
             "gguf_writer::add_tensor('{}'): {} quantises blocks of 32 along rows, but the rows have length {}",
             name, ggml_traits(type).name, values.extent(values.rank() - 1));
    pending_tensor t;
    t.name = name;
    t.type = type;
    for (int a = values.rank() - 1; a >= 0; --a) t.ne.push_back(values.extent(a));
    tensor<float> dense;
    const float* src = values.data();
    if (!values.is_contiguous()) {
        dense = tensor<float>::copy_of(values);
        src = dense.data();
    }
    const std::size_t n = values.size();
    t.bytes.resize(n / ggml_traits(type).block * ggml_traits(type).bytes);
    if (quantised)
        for (std::size_t i = 0; i < n; ++i)
            if (!std::isfinite(src[i]))
                fail(errc::invalid_argument, "gguf_writer::add_tensor('{}'): element {} is {}; {} needs finite values",
                     name, i, src[i], ggml_traits(type).name);
    if (type == ggml_type::q4_0) {
        // Per block: m = the value of largest magnitude, d = m / -8 stored as f16, q = min(15,
        // trunc(x / d + 8.5)) computed with 1/d in f32, value j in the low nibble of byte j and value
        // j + 16 in its high nibble (llama.cpp's quantize_row_q4_0_ref).
        for (std::size_t b = 0; b < n / 32; ++b) {
            const float* x = src + b * 32;
            float amax = 0.0f, max = 0.0f;
            for (std::size_t i = 0; i < 32; ++i)
                if (std::fabs(x[i]) > amax) {
                    amax = std::fabs(x[i]);
                    max = x[i];
                }
            const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            const std::uint16_t d_bits = f32_to_f16(d);
            unsigned char* block = t.bytes.data() + b * 18;
            std::memcpy(block, &d_bits, 2);
            for (std::size_t i = 0; i < 16; ++i) {
                const int q0 = std::min(15, int(static_cast<std::int8_t>(x[i] * id + 8.5f)));
                const int q1 = std::min(15, int(static_cast<std::int8_t>(x[i + 16] * id + 8.5f)));
                block[2 + i] = static_cast<unsigned char>(q0 | (q1 << 4));
            }
        }
    } else if (type == ggml_type::q8_0) {
        // Per block: d = max|x| / 127 stored as f16, q = round(x / d) computed with 1/d in f32 (as
        // llama.cpp's quantize_row_q8_0_ref, so that files match its converter's bit for bit).
        for (std::size_t b = 0; b < n / 32; ++b) {
            const float* x = src + b * 32;
            float amax = 0.0f;
            for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            const std::uint16_t d_bits = f32_to_f16(d);
            unsigned char* block = t.bytes.data() + b * 34;
            std::memcpy(block, &d_bits, 2);
            for (std::size_t i = 0; i < 32; ++i) {
                const auto q = static_cast<std::int8_t>(std::lround(x[i] * id));
                std::memcpy(block + 2 + i, &q, 1);
            }
        }
    } else if (type == ggml_type::f32) {
        std::memcpy(t.bytes.data(), src, n * sizeof(float));
    } else {
        std::vector<std::uint16_t> narrow(n);
        if (type == ggml_type::f16)
            f32_to_f16(src, narrow.data(), n);
        else
            f32_to_bf16(src, narrow.data(), n);
        std::memcpy(t.bytes.data(), narrow.data(), n * sizeof(std::uint16_t));
    }
    m_tensors.push_back(std::move(t));
    return *this;
}

namespace detail {

inline void gguf_put(std::vector<unsigned char>& out, const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    out.insert(out.end(), b, b + n);
}
template <class V>
void gguf_put_value(std::vector<unsigned char>& out, V v) {
    gguf_put(out, &v, sizeof v);
}
inline void gguf_put_string(std::vector<unsigned char>& out, const std::string& s) {
    gguf_put_value<std::uint64_t>(out, s.size());
    gguf_put(out, s.data(), s.size());
}

template <class Deferred = void>
void gguf_put_metadata(std::vector<unsigned char>& out, const gguf_value& v) {
    switch (v.type()) {
    case gguf_type::u8: gguf_put_value(out, static_cast<std::uint8_t>(v.as_uint())); return;
    case gguf_type::i8: gguf_put_value(out, static_cast<std::int8_t>(v.as_int())); return;
    case gguf_type::u16: gguf_put_value(out, static_cast<std::uint16_t>(v.as_uint())); return;
    case gguf_type::i16: gguf_put_value(out, static_cast<std::int16_t>(v.as_int())); return;
    case gguf_type::u32: gguf_put_value(out, static_cast<std::uint32_t>(v.as_uint())); return;
    case gguf_type::i32: gguf_put_value(out, static_cast<std::int32_t>(v.as_int())); return;
    case gguf_type::u64: gguf_put_value(out, v.as_uint()); return;
    case gguf_type::i64: gguf_put_value(out, v.as_int()); return;
    case gguf_type::f32: gguf_put_value(out, static_cast<float>(v.as_double())); return;
    case gguf_type::f64: gguf_put_value(out, v.as_double()); return;
    case gguf_type::boolean: gguf_put_value<std::uint8_t>(out, v.as_bool() ? 1 : 0); return;
    case gguf_type::string: gguf_put_string(out, v.as_string()); return;
    case gguf_type::array: {
        const gguf_type element = v.element_type();
        gguf_put_value(out, static_cast<std::uint32_t>(element));
        gguf_put_value<std::uint64_t>(out, v.size());
        if (element == gguf_type::string) {
            for (const std::string& s : v.to_strings()) gguf_put_string(out, s);
            return;
        }
        for (std::size_t i = 0; i < v.size(); ++i) gguf_put_metadata<Deferred>(out, v.item(i));
        return;
    }
    }
}

} // namespace detail

template <class Deferred>
void gguf_writer::write(const std::string& path) const {
    std::vector<unsigned char> header;
    detail::gguf_put(header, "GGUF", 4);
    detail::gguf_put_value<std::uint32_t>(header, 3);
    detail::gguf_put_value<std::uint64_t>(header, m_tensors.size());
    detail::gguf_put_value<std::uint64_t>(header, m_metadata.size());
    for (const auto& [key, value] : m_metadata) {
        detail::gguf_put_string(header, key);
        detail::gguf_put_value(header, static_cast<std::uint32_t>(value.type()));
        detail::gguf_put_metadata<Deferred>(header, value);
    }
    const auto align_up = [&](std::size_t n) { return (n + m_alignment - 1) / m_alignment * m_alignment; };
    std::size_t offset = 0;
    for (const pending_tensor& t : m_tensors) {
        detail::gguf_put_string(header, t.name);
        detail::gguf_put_value(header, static_cast<std::uint32_t>(t.ne.size()));
        for (std::uint64_t e : t.ne) detail::gguf_put_value(header, e);
        detail::gguf_put_value(header, static_cast<std::uint32_t>(t.type));
        detail::gguf_put_value<std::uint64_t>(header, offset);
        offset = align_up(offset + t.bytes.size());
    }
    header.resize(align_up(header.size()), 0);

    const std::string temporary = path + ".partial";
    std::FILE* out = std::fopen(temporary.c_str(), "wb");
    if (!out) fail(errc::file_open, "gguf_writer: cannot create '{}': {}", temporary, std::strerror(errno));
    bool ok = std::fwrite(header.data(), 1, header.size(), out) == header.size();
    const std::vector<unsigned char> zeros(m_alignment, 0);
    for (const pending_tensor& t : m_tensors) {
        if (ok) ok = std::fwrite(t.bytes.data(), 1, t.bytes.size(), out) == t.bytes.size();
        const std::size_t pad = align_up(t.bytes.size()) - t.bytes.size();
        if (ok && pad) ok = std::fwrite(zeros.data(), 1, pad, out) == pad;
    }
    const int saved_errno = errno;
    if (std::fclose(out) != 0) ok = false;
    if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
        const int e = ok ? errno : saved_errno;
        std::remove(temporary.c_str());
        fail(errc::file_open, "gguf_writer: cannot write '{}': {}", path, std::strerror(e));
    }
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE gguf_file::gguf_file(const std::string&);
ACTLENS_EXTERN_TEMPLATE tensor<float> gguf_file::to_float(std::string_view) const;
ACTLENS_EXTERN_TEMPLATE tensor_view<const float> gguf_file::float_view(std::string_view, tensor<float>&) const;
ACTLENS_EXTERN_TEMPLATE gguf_writer& gguf_writer::set(const std::string&, gguf_value);
ACTLENS_EXTERN_TEMPLATE gguf_writer& gguf_writer::add_tensor(const std::string&, tensor_view<const float>, ggml_type);
ACTLENS_EXTERN_TEMPLATE gguf_writer& gguf_writer::add_tensor_bytes(const std::string&, ggml_type, const shape_t&,
                                                                  const void*, std::size_t);
ACTLENS_EXTERN_TEMPLATE void gguf_writer::write(const std::string&) const;
#endif

} // namespace actlens::io
