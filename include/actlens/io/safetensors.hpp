// actlens/io/safetensors.hpp: the safetensors container (Hugging Face's weight format), read and
// written.
//
// Layout: a little-endian u64 N, then N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string>", ...}}
// then the data section; offsets are relative to its start (the byte after the header), tensors
// are row-major and little-endian.
//
// The whole header is validated before any tensor byte is read: a header size past the file or
// above safetensors_max_header, JSON that does not parse, a duplicate key, a missing or mistyped
// field, an unknown dtype, a shape whose element count overflows, a byte span that disagrees with
// dtype x shape, a span outside the data section, and spans that overlap all give an
// actlens::error naming the file and the tensor or field: io.202 (truncated: the header or a
// tensor extends past the end of the file), io.204 (malformed header), io.205 (size overflow),
// io.206 (a dtype actlens does not know or cannot convert, a rank above 4). Gaps between tensors
// and bytes after the last one are allowed.
//
// F32 tensors are used in place in the memory-mapped file when their address is 4-byte aligned
// (it is in files written by the reference writer and by save_safetensors); F16, BF16, F64 and
// misaligned F32 tensors are converted into an owned tensor<float>.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/deferred.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/json.hpp>
#include <actlens/io/detail/tensor_bytes.hpp>
#include <actlens/io/mapped_file.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "actlens/io/safetensors.hpp supports little-endian hosts only"
#endif

namespace actlens::io {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// The largest JSON header accepted, in bytes (the limit of the reference Rust implementation).
inline constexpr std::size_t safetensors_max_header = 100'000'000;

/// One tensor as a validated safetensors header describes it.
struct safetensors_tensor_info {
    std::string name;
    actlens::dtype dtype = actlens::dtype::f32;
    std::vector<std::size_t> shape; ///< as written: empty for a scalar, any rank
    std::size_t elements = 0;       ///< product of the shape (1 for a scalar)
    std::size_t begin = 0;          ///< byte offset of the first element in the data section
    std::size_t end = 0;            ///< one past the last byte; end - begin = elements * dtype size

    std::size_t bytes() const noexcept { return end - begin; }
    /// The shape as a string, e.g. "[2, 3]" ("[]" for a scalar).
    std::string shape_string() const;
};

/// A memory-mapped safetensors file with a validated header. Copies share the mapping; views into
/// it stay valid while any copy, or the pointer keep_alive() returns, lives. All methods are const
/// and safe to call from several threads.
class safetensors_file {
public:
    /// Maps and validates `path`; throws actlens::error as described at the top of this header
    /// (io.201 when the file cannot be opened). A template (of nothing) so that the JSON parser is
    /// compiled only where a file is opened (io/json.hpp).
    template <class Deferred = void>
    explicit safetensors_file(const std::string& path);

    const std::string& path() const noexcept { return m_file->path(); }
    /// Every tensor, ordered by position in the data section.
    const std::vector<safetensors_tensor_info>& tensors() const noexcept { return m_tensors; }
    /// The "__metadata__" entries (empty when there are none).
    const std::map<std::string, std::string>& metadata() const noexcept { return m_metadata; }

    /// The tensor called `name`, or nullptr.
    const safetensors_tensor_info* find(std::string_view name) const noexcept;
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
    /// The tensor called `name`; throws actlens::error (arg.101) naming the file and the tensor.
    const safetensors_tensor_info& info(std::string_view name) const;

    /// The raw little-endian bytes of a tensor of this file (info.bytes() of them).
    const std::byte* data(const safetensors_tensor_info& info) const noexcept;

    /// The shape of a tensor as an actlens shape: a scalar becomes [1]; throws (io.206) for rank
    /// > 4.
    shape_t tensor_shape(const safetensors_tensor_info& info) const;

    /// True when `name` is F32 at a 4-byte aligned address, i.e. mapped_view() can use it in place.
    bool is_mappable(std::string_view name) const;
    /// An F32 tensor in place, without a copy; throws (io.206) for other dtypes or a misaligned
    /// one.
    tensor_view<const float> mapped_view(std::string_view name) const;
    /// A converted copy of any F32, F16, BF16 or F64 tensor; throws (io.206) for other dtypes.
    tensor<float> to_float(std::string_view name) const;
    /// The tensor in place when is_mappable(name), else converted into `storage` (which the view
    /// then points into). Throws as to_float() does.
    tensor_view<const float> float_view(std::string_view name, tensor<float>& storage) const;

    /// Keeps the mapping alive (for model_weights::owners).
    std::shared_ptr<const void> keep_alive() const noexcept { return m_file; }
    /// Asks the kernel to read the whole file ahead.
    void prefetch() const noexcept { m_file->prefetch(); }

private:
    template <class Deferred = void>
    void parse_header();
    void convert(const safetensors_tensor_info& info, float* out) const;

    std::shared_ptr<const mapped_file> m_file;
    std::size_t m_data_offset = 0; ///< 8 + header size
    std::size_t m_data_size = 0;
    std::vector<safetensors_tensor_info> m_tensors;
    std::map<std::string, std::size_t, std::less<>> m_index; ///< name -> position in m_tensors
    std::map<std::string, std::string> m_metadata;
};

/// Writes `tensors` (by name; views may be strided) to `path` as a safetensors file whose tensors
/// all have dtype `type`: F32, F16 or BF16 (rounded to nearest even). The header is padded with
/// spaces to a multiple of 8 bytes, so F32 data is aligned for in-place reading. The file is
/// written under a temporary name and renamed into place. Throws actlens::error: arg.101 for
/// another dtype, an empty name, "__metadata__" as a tensor name, a view of rank 0 or without
/// data, a name or metadata that is not UTF-8; io.201 when the file cannot be written.
inline void save_safetensors(const std::string& path,
                             const std::map<std::string, tensor_view<const float>>& tensors,
                             dtype type = dtype::f32,
                             const std::map<std::string, std::string>& metadata = {});

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline std::string safetensors_tensor_info::shape_string() const {
    // A hostile header may list a million extents; a message shows the first few.
    constexpr std::size_t shown = 8;
    std::string s = "[";
    for (std::size_t i = 0; i < std::min(shape.size(), shown); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() > shown) s += ", ... (" + std::to_string(shape.size()) + " extents)";
    return s + "]";
}

template <class Deferred>
safetensors_file::safetensors_file(const std::string& path) : m_file(std::make_shared<const mapped_file>(path)) {
    parse_header<Deferred>();
}

namespace detail {

/// The first key that an object of the safetensors header names twice, at any depth (JSON parsers
/// keep one silently, and two different tensors under one name must not pass): sets `duplicate` and,
/// below the top level, `duplicate_parent` to the top-level key it is under.
inline void find_repeated_header_key(const io::json_value& value, const std::string& top_key, std::string& duplicate,
                                     std::string& duplicate_parent) {
    if (!duplicate.empty()) return;
    if (value.is_object()) {
        if (const std::string* key = repeated_json_key(value)) {
            duplicate = *key;
            duplicate_parent = top_key;
            return;
        }
        for (const auto& [key, member] : value.members())
            find_repeated_header_key(member, top_key.empty() ? key : top_key, duplicate, duplicate_parent);
    } else if (value.is_array()) {
        for (const io::json_value& element : value.elements())
            find_repeated_header_key(element, top_key, duplicate, duplicate_parent);
    }
}

/// An unsigned integer JSON value, or false.
inline bool json_unsigned(const io::json_value& v, std::size_t& out) {
    if (!v.is_unsigned()) return false;
    const std::uint64_t u = v.integer_magnitude();
    if (u > std::numeric_limits<std::size_t>::max()) return false;
    out = static_cast<std::size_t>(u);
    return true;
}

} // namespace detail

template <class Deferred>
void safetensors_file::parse_header() {
    using json = io::json_value;
    const std::string& file = m_file->path();
    byte_reader in(m_file->data(), m_file->size(), file);
    const auto header_size = in.read<std::uint64_t>("header size");
    if (header_size > safetensors_max_header)
        fail(errc::bad_header, "'{}': safetensors header size {} exceeds the limit of {} bytes",
             file, header_size, safetensors_max_header);
    if (header_size > in.remaining())
        fail(errc::file_truncated,
             "'{}': safetensors header size {} is past the end of the file ({} bytes)", file,
             header_size, m_file->size());
    const auto* text =
        reinterpret_cast<const char*>(in.take(static_cast<std::size_t>(header_size), "header"));
    m_data_offset = in.offset();
    m_data_size = in.remaining();

    // Repeated keys are kept by the parser and reported here, in the header's own words.
    const json header = io::parse_json<Deferred>(std::string_view(text, static_cast<std::size_t>(header_size)),
                                                 file + ": safetensors header", errc::bad_header,
                                                 json_duplicates::keep);
    std::string duplicate, duplicate_parent;
    detail::find_repeated_header_key(header, "", duplicate, duplicate_parent);
    if (!duplicate.empty()) {
        if (duplicate_parent.empty())
            fail(errc::bad_header, "'{}': safetensors header names tensor '{}' twice", file,
                 duplicate);
        fail(errc::bad_header, "'{}': safetensors header entry '{}' has the key '{}' twice", file,
             duplicate_parent, duplicate);
    }
    if (!header.is_object())
        fail(errc::bad_header, "'{}': safetensors header must be a JSON object, got {}", file,
             header.type_name());

    for (const auto& [name, entry] : header.members()) {
        if (name == "__metadata__") {
            if (!entry.is_object())
                fail(errc::bad_header, "'{}': '__metadata__' must be an object of strings, got {}",
                     file, entry.type_name());
            for (const auto& [key, value] : entry.members()) {
                if (!value.is_string())
                    fail(errc::bad_header,
                         "'{}': '__metadata__' entry '{}' must be a string, got {}", file, key,
                         detail::json_excerpt(value));
                m_metadata.emplace(key, value.as_string());
            }
            continue;
        }
        if (!entry.is_object())
            fail(errc::bad_header, "'{}': tensor '{}' must be described by an object, got {}", file,
                 name, detail::json_excerpt(entry));
        auto field = [&, &name = name, &entry = entry](const char* key) -> const json& {
            const json* it = entry.find(key);
            if (!it)
                fail(errc::bad_header, "'{}': tensor '{}' has no '{}' field", file, name, key);
            return *it;
        };
        safetensors_tensor_info t;
        t.name = name;

        const json& type = field("dtype");
        if (!type.is_string())
            fail(errc::bad_header, "'{}': tensor '{}' field 'dtype' must be a string, got {}", file,
                 name, detail::json_excerpt(type));
        const std::string& type_name = type.as_string();
        if (!parse_dtype(type_name.data(), type_name.size(), t.dtype))
            fail(errc::unsupported_format,
                 "'{}': tensor '{}' has dtype '{}', which actlens does not know", file, name,
                 detail::text_excerpt(type_name));

        const json& shape = field("shape");
        if (!shape.is_array())
            fail(errc::bad_header, "'{}': tensor '{}' field 'shape' must be an array, got {}", file,
                 name, detail::json_excerpt(shape));
        for (const json& e : shape.elements()) {
            std::size_t extent = 0;
            if (!detail::json_unsigned(e, extent))
                fail(errc::bad_header,
                     "'{}': tensor '{}' shape has an extent that is not a non-negative integer: {}",
                     file, name, detail::json_excerpt(e));
            t.shape.push_back(extent);
        }
        if (!addressable_elements(t.shape.begin(), t.shape.end(), t.elements))
            fail(errc::size_overflow,
                 "'{}': tensor '{}' has shape {}, whose product (a 0 counted as 1) exceeds {} elements",
                 file, name, t.shape_string(), max_tensor_elements);
        const std::size_t width = dtype_size(t.dtype);
        if (t.elements > std::numeric_limits<std::size_t>::max() / width)
            fail(errc::size_overflow,
                 "'{}': tensor '{}' ({} x {}) has more bytes than size_t holds", file, name,
                 type_name, t.shape_string());

        const json& offsets = field("data_offsets");
        if (!offsets.is_array() || offsets.size() != 2 ||
            !detail::json_unsigned(offsets[0], t.begin) ||
            !detail::json_unsigned(offsets[1], t.end))
            fail(errc::bad_header,
                 "'{}': tensor '{}' field 'data_offsets' must be [begin, end] integers, got {}",
                 file, name, detail::json_excerpt(offsets));
        if (t.begin > t.end)
            fail(errc::bad_header, "'{}': tensor '{}' data_offsets [{}, {}] end before they begin",
                 file, name, t.begin, t.end);
        if (t.end - t.begin != t.elements * width)
            fail(errc::bad_header,
                 "'{}': tensor '{}' has dtype {} and shape {}, which need {} bytes, but its "
                 "data_offsets [{}, {}] span {}",
                 file, name, type_name, t.shape_string(), t.elements * width, t.begin, t.end,
                 t.end - t.begin);
        if (t.end > m_data_size)
            fail(errc::file_truncated,
                 "'{}': tensor '{}' data_offsets [{}, {}] extend past the end of the data section "
                 "({} bytes)",
                 file, name, t.begin, t.end, m_data_size);
        m_tensors.push_back(std::move(t));
    }

    std::sort(m_tensors.begin(), m_tensors.end(),
              [](const safetensors_tensor_info& a, const safetensors_tensor_info& b) {
                  // Names break ties (empty tensors) so that the order does not depend on the header's.
                  return a.begin != b.begin ? a.begin < b.begin : a.end != b.end ? a.end < b.end : a.name < b.name;
              });
    std::vector<detail::byte_range> ranges;
    ranges.reserve(m_tensors.size());
    for (const safetensors_tensor_info& t : m_tensors) ranges.push_back({t.name, t.begin, t.end});
    detail::check_no_overlap(file, std::move(ranges));
    for (std::size_t i = 0; i < m_tensors.size(); ++i)
        m_index.emplace(m_tensors[i].name, i);
}

inline const safetensors_tensor_info* safetensors_file::find(std::string_view name) const noexcept {
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

inline const safetensors_tensor_info& safetensors_file::info(std::string_view name) const {
    const safetensors_tensor_info* t = find(name);
    if (!t) fail(errc::invalid_argument, "'{}' has no tensor '{}'", path(), name);
    return *t;
}

inline const std::byte* safetensors_file::data(const safetensors_tensor_info& info) const noexcept {
    return m_file->data() + m_data_offset + info.begin;
}

inline shape_t safetensors_file::tensor_shape(const safetensors_tensor_info& info) const {
    if (info.shape.size() > static_cast<std::size_t>(max_rank))
        fail(errc::unsupported_format,
             "'{}': tensor '{}' has rank {} (shape {}); actlens tensors have rank 1 to {}", path(),
             info.name, info.shape.size(), info.shape_string(), max_rank);
    shape_t s;
    if (info.shape.empty()) return shape_t{1};
    s.rank = static_cast<int>(info.shape.size());
    std::copy(info.shape.begin(), info.shape.end(), s.extents.begin());
    return s;
}

inline bool safetensors_file::is_mappable(std::string_view name) const {
    const safetensors_tensor_info& t = info(name);
    return t.dtype == dtype::f32 && detail::float_aligned(data(t));
}

inline tensor_view<const float> safetensors_file::mapped_view(std::string_view name) const {
    const safetensors_tensor_info& t = info(name);
    if (t.dtype != dtype::f32)
        fail(errc::unsupported_format,
             "'{}': tensor '{}' has dtype {}; only F32 tensors can be used in place", path(),
             t.name, dtype_name(t.dtype));
    if (!is_mappable(name))
        fail(errc::unsupported_format,
             "'{}': tensor '{}' is not 4-byte aligned in the file; use to_float()", path(), t.name);
    return tensor_view<const float>(reinterpret_cast<const float*>(data(t)), tensor_shape(t));
}

inline void safetensors_file::convert(const safetensors_tensor_info& t, float* out) const {
    const std::byte* p = data(t);
    const std::size_t n = t.elements;
    if (n == 0) return;
    switch (t.dtype) {
    case dtype::f32:
        std::memcpy(out, p, n * sizeof(float));
        return;
    case dtype::f64:
        detail::f64_bytes_to_f32(p, out, n);
        return;
    case dtype::f16:
    case dtype::bf16:
        // The data section may start at any offset.
        detail::half_bytes_to_f32(p, out, n, t.dtype == dtype::bf16);
        return;
    default:
        fail(errc::unsupported_format,
             "'{}': tensor '{}' has dtype {}; only F32, F16, BF16 and F64 convert to float", path(),
             t.name, dtype_name(t.dtype));
    }
}

inline tensor<float> safetensors_file::to_float(std::string_view name) const {
    const safetensors_tensor_info& t = info(name);
    tensor<float> out;
    out.reshape_uninitialized(tensor_shape(t));
    convert(t, out.data());
    return out;
}

inline tensor_view<const float> safetensors_file::float_view(std::string_view name,
                                                             tensor<float>& storage) const {
    if (is_mappable(name)) return mapped_view(name);
    storage = to_float(name);
    return static_cast<const tensor<float>&>(storage).view();
}

inline void save_safetensors(const std::string& path,
                             const std::map<std::string, tensor_view<const float>>& tensors,
                             dtype type, const std::map<std::string, std::string>& metadata) {
    using json = io::json_value;
    if (type != dtype::f32 && type != dtype::f16 && type != dtype::bf16)
        fail(errc::invalid_argument,
             "save_safetensors('{}'): dtype {} is not one of F32, F16, BF16", path,
             dtype_name(type));
    const std::size_t width = dtype_size(type);
    json header = json::object();
    if (!metadata.empty()) {
        json entries = json::object();
        for (const auto& [key, value] : metadata) entries.append_member(key, value);
        header.append_member("__metadata__", std::move(entries));
    }
    std::size_t offset = 0;
    for (const auto& [name, view] : tensors) {
        if (name.empty() || name == "__metadata__")
            fail(errc::invalid_argument, "save_safetensors('{}'): '{}' is not a valid tensor name",
                 path, name);
        if (view.rank() < 1 || (view.data() == nullptr && view.size() != 0))
            fail(errc::invalid_argument, "save_safetensors('{}'): tensor '{}' is an empty view",
                 path, name);
        json shape = json::array();
        for (int a = 0; a < view.rank(); ++a)
            shape.push_back(view.extent(a));
        const std::size_t bytes = view.size() * width;
        header.append_member(name, json::object({{"dtype", dtype_name(type)},
                                                 {"shape", std::move(shape)},
                                                 {"data_offsets", json::array({offset, offset + bytes})}}));
        offset += bytes;
    }
    std::string text;
    try {
        text = io::dump_json(header);
    } catch (const error& e) {
        fail(errc::invalid_argument,
             "save_safetensors('{}'): a tensor name or metadata is not UTF-8: {}", path, e.what());
    }
    // Padding to a multiple of 8 keeps the data section (and so every F32 tensor) aligned.
    text.append((8 - text.size() % 8) % 8, ' ');

    const std::string temporary = path + ".partial";
    std::FILE* out = std::fopen(temporary.c_str(), "wb");
    if (!out)
        fail(errc::file_open, "save_safetensors: cannot create '{}': {}", temporary,
             std::strerror(errno));
    bool ok = true;
    auto write = [&](const void* p, std::size_t n) {
        if (ok && n != 0) ok = std::fwrite(p, 1, n, out) == n;
    };
    const std::uint64_t header_size = text.size();
    write(&header_size, sizeof header_size);
    write(text.data(), text.size());
    std::vector<std::uint16_t> narrow;
    for (const auto& [name, view] : tensors) {
        if (view.size() == 0) continue;
        tensor<float> dense;
        const float* values = view.data();
        if (!view.is_contiguous()) {
            dense = tensor<float>::copy_of(view);
            values = dense.data();
        }
        if (type == dtype::f32) {
            write(values, view.size() * sizeof(float));
            continue;
        }
        narrow.resize(view.size());
        if (type == dtype::f16)
            f32_to_f16(values, narrow.data(), narrow.size());
        else
            f32_to_bf16(values, narrow.data(), narrow.size());
        write(narrow.data(), narrow.size() * sizeof(std::uint16_t));
    }
    const int saved_errno = errno;
    if (std::fclose(out) != 0) ok = false;
    if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
        const int e = ok ? errno : saved_errno;
        std::remove(temporary.c_str());
        fail(errc::file_open, "save_safetensors: cannot write '{}': {}", path, std::strerror(e));
    }
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE safetensors_file::safetensors_file(const std::string&);
#endif

} // namespace actlens::io
