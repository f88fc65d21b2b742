// actlens/kernels/weight_format.hpp: the element formats a weight row can be multiplied in place in
// (kernels/gemm_rows.hpp), and the decoding of ggml's quantised blocks into f32.
//
// A row of `in` weights is stored as GGUF stores it: f32, f16 or bf16 elements, or ggml's blocks
// along the row (ggml-common.h, block_q8_0 ... block_q6_K; README "Weights in their own dtype"):
//   Q8_0  32 values in 34 bytes: f16 scale d, int8 q[32];                      x = d q
//   Q4_0  32 values in 18 bytes: f16 d, 16 bytes of nibbles (value j in the low nibble of byte j,
//         value j + 16 in its high nibble);                                    x = d (q - 8)
//   Q4_K  256 values in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8
//         sub-blocks of 32, 128 bytes of nibbles (64 values per 32 bytes: low nibbles first);
//                                                                              x = (d sc) q - dmin m
//   Q6_K  256 values in 210 bytes: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8 scales,
//         f16 d;                                                               x = (d sc) (q - 32)
// decode_block gives each value with exactly the operations and order of ggml's reference
// dequantize_row_* (so the f32 weights are llama.cpp's): d q for Q8_0 and Q4_0 is exact in f32 (an
// 11-bit by 8-bit product); for Q4_K, (d sc) q is exact and the subtraction rounds once; for Q6_K,
// d sc is exact and the product with q - 32 rounds once.
#pragma once

#include <actlens/core/dtype.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace actlens::kernels {

/// How a weight row is stored.
enum class weight_format { f32, f16, bf16, q8_0, q4_0, q4_k, q6_k };

/// "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K" or "Q6_K" (ggml's names).
constexpr const char* weight_format_name(weight_format f) noexcept;
/// Values per block (1 for the plain types).
constexpr std::size_t weight_block_values(weight_format f) noexcept;
/// Bytes per block (the element size for the plain types).
constexpr std::size_t weight_block_bytes(weight_format f) noexcept;
/// Whether f holds ggml blocks (values are decoded, not widened).
constexpr bool is_quantised(weight_format f) noexcept { return weight_block_values(f) > 1; }
/// Bytes of a row of `in` values (in a multiple of the block).
constexpr std::size_t weight_row_bytes(weight_format f, std::size_t in) noexcept {
    return in / weight_block_values(f) * weight_block_bytes(f);
}

/// The f32 values of the block at `block` (weight_block_values(f) of them; any alignment) into out.
inline void decode_block(weight_format f, const unsigned char* block, float* out) noexcept;
/// Values [first, first + count) of a row of format f at `row`, as f32, into out; `first` and
/// `count` whole blocks (count may end at the row's end).
inline void decode_values(weight_format f, const unsigned char* row, std::size_t first, std::size_t count,
                          float* out) noexcept;

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

constexpr const char* weight_format_name(weight_format f) noexcept {
    switch (f) {
    case weight_format::f32: return "F32";
    case weight_format::f16: return "F16";
    case weight_format::bf16: return "BF16";
    case weight_format::q8_0: return "Q8_0";
    case weight_format::q4_0: return "Q4_0";
    case weight_format::q4_k: return "Q4_K";
    case weight_format::q6_k: return "Q6_K";
    }
    return "?";
}

constexpr std::size_t weight_block_values(weight_format f) noexcept {
    switch (f) {
    case weight_format::q8_0:
    case weight_format::q4_0: return 32;
    case weight_format::q4_k:
    case weight_format::q6_k: return 256;
    default: return 1;
    }
}

constexpr std::size_t weight_block_bytes(weight_format f) noexcept {
    switch (f) {
    case weight_format::f32: return 4;
    case weight_format::f16:
    case weight_format::bf16: return 2;
    case weight_format::q8_0: return 34;
    case weight_format::q4_0: return 18;
    case weight_format::q4_k: return 144;
    case weight_format::q6_k: return 210;
    }
    return 0;
}

namespace detail {

inline float f16_at(const unsigned char* p) noexcept {
    std::uint16_t bits;
    std::memcpy(&bits, p, 2);
    return f16_to_f32(bits);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (< 8) of a Q4_K block.
inline void q4_k_scale_min(std::size_t j, const unsigned char* s, int& scale, int& min) noexcept {
    if (j < 4) {
        scale = s[j] & 63;
        min = s[j + 4] & 63;
    } else {
        scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

} // namespace detail

inline void decode_block(weight_format f, const unsigned char* b, float* out) noexcept {
    switch (f) {
    case weight_format::f32: std::memcpy(out, b, 4); return;
    case weight_format::f16: out[0] = detail::f16_at(b); return;
    case weight_format::bf16: {
        std::uint16_t bits;
        std::memcpy(&bits, b, 2);
        out[0] = bf16_to_f32(bits);
        return;
    }
    case weight_format::q8_0: {
        const float d = detail::f16_at(b);
        for (std::size_t i = 0; i < 32; ++i) out[i] = d * float(static_cast<std::int8_t>(b[2 + i]));
        return;
    }
    case weight_format::q4_0: {
        const float d = detail::f16_at(b);
        for (std::size_t i = 0; i < 16; ++i) {
            out[i] = float((b[2 + i] & 0xF) - 8) * d;
            out[i + 16] = float((b[2 + i] >> 4) - 8) * d;
        }
        return;
    }
    case weight_format::q4_k: {
        const float d = detail::f16_at(b), dmin = detail::f16_at(b + 2);
        const unsigned char *scales = b + 4, *q = b + 16;
        for (std::size_t j = 0; j < 8; j += 2, q += 32, out += 64) {
            int sc, m;
            detail::q4_k_scale_min(j, scales, sc, m);
            const float d1 = d * float(sc), m1 = dmin * float(m);
            detail::q4_k_scale_min(j + 1, scales, sc, m);
            const float d2 = d * float(sc), m2 = dmin * float(m);
            for (std::size_t l = 0; l < 32; ++l) out[l] = d1 * float(q[l] & 0xF) - m1;
            for (std::size_t l = 0; l < 32; ++l) out[32 + l] = d2 * float(q[l] >> 4) - m2;
        }
        return;
    }
    case weight_format::q6_k: {
        const unsigned char *ql = b, *qh = b + 128;
        const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
        const float d = detail::f16_at(b + 208);
        for (std::size_t half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, out += 128)
            for (std::size_t l = 0; l < 32; ++l) {
                const std::size_t is = l / 16;
                const int q1 = int((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                out[l] = d * float(sc[is]) * float(q1);
                out[l + 32] = d * float(sc[is + 2]) * float(q2);
                out[l + 64] = d * float(sc[is + 4]) * float(q3);
                out[l + 96] = d * float(sc[is + 6]) * float(q4);
            }
        return;
    }
    }
}

inline void decode_values(weight_format f, const unsigned char* row, std::size_t first, std::size_t count,
                          float* out) noexcept {
    const std::size_t values = weight_block_values(f), bytes = weight_block_bytes(f);
    for (std::size_t i = 0; i < count; i += values) decode_block(f, row + (first + i) / values * bytes, out + i);
}

} // namespace actlens::kernels
