// actlens/io/detail/tensor_bytes.hpp: what every reader of a tensor file (io/gguf.hpp,
// io/safetensors.hpp) does with the tensors' raw bytes, written once: check that their byte ranges
// do not overlap, tell whether F32 data can be used in place, and convert F64, F16 and BF16 data to
// float whatever its alignment in the file.
#pragma once

#include <actlens/core/dtype.hpp>
#include <actlens/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace actlens::io::detail {

/// A tensor's bytes [begin, end) within a file's data section.
struct byte_range {
    std::string_view name;
    std::size_t begin = 0, end = 0;
};

/// Throws bad_header naming `file` and both tensors when two of `ranges` share a byte (empty
/// tensors share none, wherever they sit).
inline void check_no_overlap(const std::string& file, std::vector<byte_range> ranges) {
    std::sort(ranges.begin(), ranges.end(), [](const byte_range& a, const byte_range& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    for (std::size_t i = 1; i < ranges.size(); ++i) {
        const byte_range &a = ranges[i - 1], &b = ranges[i];
        if (b.begin < a.end)
            fail(errc::bad_header, "'{}': tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap", file,
                 a.name, a.begin, a.end, b.name, b.begin, b.end);
    }
}

/// True when float data at `p` may be read in place (a view needs float alignment).
inline bool float_aligned(const std::byte* p) noexcept {
    return reinterpret_cast<std::uintptr_t>(p) % alignof(float) == 0;
}

/// n little-endian doubles at `p` (any alignment) to float.
inline void f64_bytes_to_f32(const std::byte* p, float* out, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + i * sizeof(double), sizeof(double));
        out[i] = static_cast<float>(v);
    }
}

/// n IEEE halves (or, with `brain`, bfloat16s) at `p` to float. A file may place them at an odd
/// address, and 16-bit loads need 2-byte alignment: such data is first copied (once per tensor).
inline void half_bytes_to_f32(const std::byte* p, float* out, std::size_t n, bool brain) {
    const auto* bits = reinterpret_cast<const std::uint16_t*>(p);
    std::vector<std::uint16_t> scratch;
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(std::uint16_t) != 0) {
        scratch.resize(n);
        std::memcpy(scratch.data(), p, n * sizeof(std::uint16_t));
        bits = scratch.data();
    }
    if (brain)
        actlens::bf16_to_f32(bits, out, n);
    else
        actlens::f16_to_f32(bits, out, n);
}

} // namespace actlens::io::detail
