// actlens/kernels/detail/isa_vectors.hpp: the float vector of each instruction set, `vec` in
// detail::avx512 (16 lanes, zmm), detail::avx2 (8 lanes, ymm) and detail::baseline (4 lanes,
// GCC/Clang vector extension: SSE2 on x86-64). The kernel bodies (sgemm_body.inc,
// input_grad_body.inc) are written once against this interface and compiled in each namespace:
//
//   reg, width                 the register and its lanes
//   tile_rows                  rows of a register tile: 3 * tile_rows accumulators + 3 loads + a
//                              broadcast fit the register file (32 zmm, 16 ymm, 16 xmm)
//   mask, first(n)             the lanes < n (n may exceed width)
//   load (aligned) / loadu / load_masked (lanes outside the mask read as 0 and are not accessed),
//   load_f16 / load_bf16       `width` 16-bit values (f16 or bf16 bits, core/dtype.hpp) widened to
//                              f32, exactly (unaligned)
//   load_i8                    `width` int8 values as f32 (unaligned)
//   load_u8_field<shift, bits> `width` bytes' bit fields (byte >> shift) & (2^bits - 1) as f32
//                              (unaligned): the nibbles and 2-bit fields of ggml's blocks
//   store (aligned) / storeu, store_masked, set1, zero, add, sub, mul, madd(a, b, acc) = a * b + acc (one FMA where there is FMA),
//   in_register(v)             makes v a register value here: a loaded vector used by several
//                              multiply-adds is then loaded once, not folded into each of them as
//                              a memory operand (which turns 1 load per R FMAs into 1 per FMA)
//   reduce(v)                  the lanes' sum as a halving tree: lane i + lane i + width/2, ...
//   reduce_16(v, out)          (AVX-512 only) out[i] = reduce(v[i]) for 16 vectors, fewer adds
//   prefetch(p)                into L2
//   prefetch_stream(p)         non-temporal (NTA): for weights read once per product, whose lines
//                              should leave the caches without displacing others (rows_body.inc)
//   pack_16_columns            transposes 16 rows of w into a panel's 16 columns, for K steps
//                              in multiples of 16; returns how many it did (0 where there is no
//                              fast transpose: the caller packs the rest element by element)
#pragma once

#include <actlens/core/dtype.hpp>
#include <actlens/core/isa_regions.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if ACTLENS_ISA_X86
#include <immintrin.h>
#endif

#if ACTLENS_ISA_X86
ACTLENS_ISA_BEGIN_AVX512
namespace actlens::kernels::detail::avx512 {

struct vec {
    using reg = __m512;
    using mask = __mmask16;
    static constexpr std::size_t width = 16, tile_rows = 8;

    static mask first(std::size_t n) noexcept { return n >= 16 ? mask(0xFFFF) : mask((1u << n) - 1u); }
    static reg zero() noexcept { return _mm512_setzero_ps(); }
    static reg set1(float x) noexcept { return _mm512_set1_ps(x); }
    static reg load(const float* p) noexcept { return _mm512_load_ps(p); }
    static reg loadu(const float* p) noexcept { return _mm512_loadu_ps(p); }
    static reg load_masked(mask m, const float* p) noexcept { return _mm512_maskz_loadu_ps(m, p); }
    static reg load_f16(const std::uint16_t* p) noexcept {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    // One f16 at an unaligned address (a Q8_0 block's scale) broadcast: the F16C conversion, as the
    // software f16_to_f32 once per 16 weights made Q8_0 decode 2-3x slower than f32.
    static reg set1_f16(const unsigned char* p) noexcept {
        std::uint16_t bits;
        std::memcpy(&bits, p, 2);
        return _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
    }
    static reg load_bf16(const std::uint16_t* p) noexcept {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
    }
    static reg load_i8(const std::int8_t* p) noexcept {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    }
    template <int shift, int bits>
    static reg load_u8_field(const unsigned char* p) noexcept {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        if constexpr (shift != 0) v = _mm512_srli_epi32(v, shift);
        if constexpr (shift + bits < 8) v = _mm512_and_si512(v, _mm512_set1_epi32((1 << bits) - 1));
        return _mm512_cvtepi32_ps(v);
    }
    static void store(float* p, reg v) noexcept { _mm512_store_ps(p, v); }
    static void storeu(float* p, reg v) noexcept { _mm512_storeu_ps(p, v); }
    static void store_masked(float* p, mask m, reg v) noexcept { _mm512_mask_storeu_ps(p, m, v); }
    static reg add(reg a, reg b) noexcept { return _mm512_add_ps(a, b); }
    static reg sub(reg a, reg b) noexcept { return _mm512_sub_ps(a, b); }
    static reg mul(reg a, reg b) noexcept { return _mm512_mul_ps(a, b); }
    static reg madd(reg a, reg b, reg acc) noexcept { return _mm512_fmadd_ps(a, b, acc); }
    static reg in_register(reg v) noexcept {
        __asm__("" : "+v"(v));
        return v;
    }
    static void prefetch(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }
    static void prefetch_stream(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_NTA); }

    // Halving with two-source permutes: GCC 12's unpack/shuffle intrinsics warn
    // (-Wmaybe-uninitialized, GCC bug 105593).
    static float reduce(reg v) noexcept {
        const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 4
        for (int half = 8; half >= 1; half >>= 1)
            v = _mm512_add_ps(v, _mm512_permutex2var_ps(v, _mm512_xor_si512(lane, _mm512_set1_epi32(half)), v));
        return _mm512_cvtss_f32(v);
    }

    // out[i] = reduce(v[i]) for 16 vectors, bit for bit (the same halving tree: lane l + lane l + 8,
    // then + 4, + 2, + 1), in 15 adds instead of 60: each stage adds the two halves of every
    // output's remaining lanes for two vectors' outputs at once (two-source permutes, as at reduce).
    static void reduce_16(const reg* v, float* out) noexcept {
        reg r[16];
        for (int i = 0; i < 16; ++i) r[i] = v[i];
#pragma GCC unroll 4
        for (int half = 8, n = 16; half >= 1; half >>= 1, n >>= 1) {
            // Result lane p holds segment p / half: from the second vector if it is odd, of its
            // source's segment (p / half) / 2 (segments are 2 half lanes long there), lane p % half.
            alignas(64) std::int32_t low[16];
            for (int p = 0; p < 16; ++p) low[p] = (p / half % 2) * 16 + (p / half / 2) * 2 * half + p % half;
            const __m512i lo = _mm512_load_si512(low), hi = _mm512_add_epi32(lo, _mm512_set1_epi32(half));
#pragma GCC unroll 8
            for (int i = 0; i < n / 2; ++i)
                r[i] = _mm512_add_ps(_mm512_permutex2var_ps(r[i], lo, r[i + n / 2]),
                                     _mm512_permutex2var_ps(r[i], hi, r[i + n / 2]));
        }
        _mm512_storeu_ps(out, r[0]);
    }

    // In-register 16 x 16 transpose: stage i swaps bit i of the row index with bit i of the column
    // index (rows r and r + 2^i exchange the lanes whose column has that bit set or clear).
    // Two-source permutes only, for the reason given at reduce.
    static void transpose_16x16(reg* r) noexcept {
        const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        const __m512i other = _mm512_set1_epi32(16);
#pragma GCC unroll 4
        for (int bit = 1; bit < 16; bit <<= 1) {
            const __m512i m = _mm512_set1_epi32(bit), flipped = _mm512_xor_si512(lane, m);
            const __mmask16 high = _mm512_test_epi32_mask(lane, m);
            // low row: its own lanes where the column bit is 0, else the partner's lane c ^ bit;
            // high row: the low row's lane c ^ bit where the column bit is 0, else its own lanes.
            const __m512i lo_idx = _mm512_mask_mov_epi32(lane, high, _mm512_or_si512(flipped, other));
            const __m512i hi_idx = _mm512_mask_mov_epi32(flipped, high, _mm512_or_si512(lane, other));
#pragma GCC unroll 16
            for (int row = 0; row < 16; ++row) {
                if (row & bit) continue;
                const reg a = r[row], b = r[row + bit];
                r[row] = _mm512_permutex2var_ps(a, lo_idx, b);
                r[row + bit] = _mm512_permutex2var_ps(a, hi_idx, b);
            }
        }
    }

    // dst[p][0..16) (rows `ld` apart) = w[0..16)[p] (rows `ldw` apart) for p < k rounded down to 16.
    static std::size_t pack_16_columns(const float* w, std::size_t ldw, std::size_t k, float* dst,
                                       std::size_t ld) noexcept {
        std::size_t p0 = 0;
        for (; p0 + 16 <= k; p0 += 16) {
            reg r[16];
            for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(w + std::size_t(j) * ldw + p0);
            transpose_16x16(r);
            for (int q = 0; q < 16; ++q) _mm512_store_ps(dst + (p0 + std::size_t(q)) * ld, r[q]);
        }
        return p0;
    }
};

} // namespace actlens::kernels::detail::avx512
ACTLENS_ISA_END

ACTLENS_ISA_BEGIN_AVX2
namespace actlens::kernels::detail::avx2 {

struct vec {
    using reg = __m256;
    using mask = __m256i;
    static constexpr std::size_t width = 8, tile_rows = 4;

    static mask first(std::size_t n) noexcept {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<std::size_t>(n, 8))),
                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static reg zero() noexcept { return _mm256_setzero_ps(); }
    static reg set1(float x) noexcept { return _mm256_set1_ps(x); }
    static reg load(const float* p) noexcept { return _mm256_load_ps(p); }
    static reg loadu(const float* p) noexcept { return _mm256_loadu_ps(p); }
    static reg load_masked(mask m, const float* p) noexcept { return _mm256_maskload_ps(p, m); }
    static reg load_f16(const std::uint16_t* p) noexcept {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static reg set1_f16(const unsigned char* p) noexcept {
        std::uint16_t bits;
        std::memcpy(&bits, p, 2);
        return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
    }
    static reg load_bf16(const std::uint16_t* p) noexcept {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    static reg load_i8(const std::int8_t* p) noexcept {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    }
    template <int shift, int bits>
    static reg load_u8_field(const unsigned char* p) noexcept {
        __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        if constexpr (shift != 0) v = _mm256_srli_epi32(v, shift);
        if constexpr (shift + bits < 8) v = _mm256_and_si256(v, _mm256_set1_epi32((1 << bits) - 1));
        return _mm256_cvtepi32_ps(v);
    }
    static void store(float* p, reg v) noexcept { _mm256_store_ps(p, v); }
    static void storeu(float* p, reg v) noexcept { _mm256_storeu_ps(p, v); }
    static void store_masked(float* p, mask m, reg v) noexcept { _mm256_maskstore_ps(p, m, v); }
    static reg add(reg a, reg b) noexcept { return _mm256_add_ps(a, b); }
    static reg sub(reg a, reg b) noexcept { return _mm256_sub_ps(a, b); }
    static reg mul(reg a, reg b) noexcept { return _mm256_mul_ps(a, b); }
    static reg madd(reg a, reg b, reg acc) noexcept { return _mm256_fmadd_ps(a, b, acc); }
    static reg in_register(reg v) noexcept {
        __asm__("" : "+x"(v));
        return v;
    }
    static void prefetch(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }
    static void prefetch_stream(const void* p) noexcept { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_NTA); }
    static float reduce(reg v) noexcept {
        v = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 1));                   // lane i + lane i ^ 4
        v = _mm256_add_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));     // lane i + lane i ^ 2
        v = _mm256_add_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));     // lane i + lane i ^ 1
        return _mm256_cvtss_f32(v);
    }
    static std::size_t pack_16_columns(const float*, std::size_t, std::size_t, float*, std::size_t) noexcept {
        return 0;
    }
};

} // namespace actlens::kernels::detail::avx2
ACTLENS_ISA_END
#endif

ACTLENS_ISA_BEGIN_BASELINE
namespace actlens::kernels::detail::baseline {

struct vec {
    using reg = float __attribute__((vector_size(16)));
    using mask = std::size_t; // the number of lanes
    static constexpr std::size_t width = 4, tile_rows = 4;

    static mask first(std::size_t n) noexcept { return std::min<std::size_t>(n, 4); }
    static reg zero() noexcept { return reg{0, 0, 0, 0}; }
    static reg set1(float x) noexcept { return reg{x, x, x, x}; }
    static reg load(const float* p) noexcept { return loadu(p); }
    static reg loadu(const float* p) noexcept {
        reg v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    static reg load_masked(mask m, const float* p) noexcept {
        reg v = zero();
        for (std::size_t i = 0; i < m; ++i) v[i] = p[i];
        return v;
    }
    static reg load_f16(const std::uint16_t* p) noexcept {
        return reg{f16_to_f32(p[0]), f16_to_f32(p[1]), f16_to_f32(p[2]), f16_to_f32(p[3])};
    }
    static reg set1_f16(const unsigned char* p) noexcept {
        std::uint16_t bits;
        std::memcpy(&bits, p, 2);
        return set1(f16_to_f32(bits));
    }
    static reg load_bf16(const std::uint16_t* p) noexcept {
        return reg{bf16_to_f32(p[0]), bf16_to_f32(p[1]), bf16_to_f32(p[2]), bf16_to_f32(p[3])};
    }
    static reg load_i8(const std::int8_t* p) noexcept { return reg{float(p[0]), float(p[1]), float(p[2]), float(p[3])}; }
    template <int shift, int bits>
    static reg load_u8_field(const unsigned char* p) noexcept {
        constexpr unsigned m = (1u << bits) - 1u;
        return reg{float((p[0] >> shift) & m), float((p[1] >> shift) & m), float((p[2] >> shift) & m),
                   float((p[3] >> shift) & m)};
    }
    static void store(float* p, reg v) noexcept { std::memcpy(p, &v, sizeof v); }
    static void storeu(float* p, reg v) noexcept { std::memcpy(p, &v, sizeof v); }
    static void store_masked(float* p, mask m, reg v) noexcept {
        for (std::size_t i = 0; i < m; ++i) p[i] = v[i];
    }
    static reg add(reg a, reg b) noexcept { return a + b; }
    static reg sub(reg a, reg b) noexcept { return a - b; }
    static reg mul(reg a, reg b) noexcept { return a * b; }
    static reg madd(reg a, reg b, reg acc) noexcept { return a * b + acc; } // two roundings: no FMA here
    static reg in_register(reg v) noexcept { return v; }
    static void prefetch(const void* p) noexcept { __builtin_prefetch(p, 0, 2); }
    static void prefetch_stream(const void* p) noexcept { __builtin_prefetch(p, 0, 0); }
    static float reduce(reg v) noexcept { return (v[0] + v[2]) + (v[1] + v[3]); }
    static std::size_t pack_16_columns(const float*, std::size_t, std::size_t, float*, std::size_t) noexcept {
        return 0;
    }
};

} // namespace actlens::kernels::detail::baseline
ACTLENS_ISA_END_BASELINE
