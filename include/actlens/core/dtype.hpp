// actlens/core/dtype.hpp: element types of weight files, and exact f16 / bf16 <-> f32 conversion.
//
// f16 is IEEE 754 binary16 (1 sign, 5 exponent, 10 fraction bits); bf16 is the upper 16 bits of an
// f32 (1 sign, 8 exponent, 7 fraction bits). Widening to f32 is exact for both. Narrowing from f32
// rounds to nearest, ties to even; values too large become infinity (f16: |x| >= 65520); f32
// subnormals and tiny values become f16 subnormals or a signed zero as rounding says. A NaN stays a
// NaN of the same sign with its leading payload bits kept; its quiet bit is set in both f16
// directions (what x86 F16C instructions do, so the bulk converters give the same bits with and
// without them) and on narrowing to bf16, while bf16 -> f32 is the plain 16-bit shift.
//
// The bulk f16 converters use F16C when the CPU has it (any x86 CPU since 2012; decided at run time,
// whatever the translation unit's flags: core/isa_regions.hpp) and plain loops otherwise; bf16 loops
// are branch-free so the compiler vectorises them. All functions are noexcept and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <actlens/core/cpu.hpp>
#include <actlens/core/isa_regions.hpp>

#if ACTLENS_ISA_X86
#include <immintrin.h>
#endif

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// Element types found in weight and activation files (the safetensors set).
enum class dtype {
    boolean, ///< "BOOL", one byte
    u8,
    i8,
    u16,
    i16,
    f16, ///< IEEE binary16
    bf16,
    u32,
    i32,
    f32,
    u64,
    i64,
    f64,
    f8_e4m3, ///< "F8_E4M3"
    f8_e5m2, ///< "F8_E5M2"
};

/// Bytes per element.
constexpr std::size_t dtype_size(dtype t) noexcept;

/// The name safetensors uses: "F32", "BF16", "I64", "BOOL", "F8_E4M3", ...
constexpr const char* dtype_name(dtype t) noexcept;

/// Parses a name as dtype_name() spells it; returns false (and leaves `out`) for an unknown name.
inline bool parse_dtype(const char* name, std::size_t length, dtype& out) noexcept;

/// f16 bits -> f32, exact.
inline float f16_to_f32(std::uint16_t h) noexcept;
/// f32 -> f16 bits, round to nearest even.
inline std::uint16_t f32_to_f16(float f) noexcept;
/// bf16 bits -> f32, exact.
inline float bf16_to_f32(std::uint16_t b) noexcept;
/// f32 -> bf16 bits, round to nearest even.
inline std::uint16_t f32_to_bf16(float f) noexcept;

/// Bulk forms of the four conversions: out[i] = convert(in[i]) for i < n. The buffers must not
/// overlap; they need only the natural alignment of their element type.
inline void f16_to_f32(const std::uint16_t* in, float* out, std::size_t n) noexcept;
inline void f32_to_f16(const float* in, std::uint16_t* out, std::size_t n) noexcept;
inline void bf16_to_f32(const std::uint16_t* in, float* out, std::size_t n) noexcept;
inline void f32_to_bf16(const float* in, std::uint16_t* out, std::size_t n) noexcept;

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

inline std::uint32_t float_bits(float f) noexcept {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float bits_float(std::uint32_t u) noexcept {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

struct dtype_row {
    dtype type;
    const char* name;
    std::size_t size;
};

inline constexpr dtype_row dtype_table[] = {
    {dtype::boolean, "BOOL", 1}, {dtype::u8, "U8", 1},           {dtype::i8, "I8", 1},
    {dtype::u16, "U16", 2},      {dtype::i16, "I16", 2},         {dtype::f16, "F16", 2},
    {dtype::bf16, "BF16", 2},    {dtype::u32, "U32", 4},         {dtype::i32, "I32", 4},
    {dtype::f32, "F32", 4},      {dtype::u64, "U64", 8},         {dtype::i64, "I64", 8},
    {dtype::f64, "F64", 8},      {dtype::f8_e4m3, "F8_E4M3", 1}, {dtype::f8_e5m2, "F8_E5M2", 1},
};

} // namespace detail

constexpr std::size_t dtype_size(dtype t) noexcept {
    for (const detail::dtype_row& r : detail::dtype_table)
        if (r.type == t) return r.size;
    return 0;
}

constexpr const char* dtype_name(dtype t) noexcept {
    for (const detail::dtype_row& r : detail::dtype_table)
        if (r.type == t) return r.name;
    return "?";
}

inline bool parse_dtype(const char* name, std::size_t length, dtype& out) noexcept {
    for (const detail::dtype_row& r : detail::dtype_table)
        if (std::strlen(r.name) == length && std::memcmp(r.name, name, length) == 0) {
            out = r.type;
            return true;
        }
    return false;
}

inline float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t fraction = h & 0x3ffu;
    if (exponent == 0x1f) // infinity, or a NaN made quiet with its payload kept
        return detail::bits_float(sign | 0x7f800000u | (fraction << 13) |
                                  (fraction ? 0x00400000u : 0u));
    if (exponent != 0)
        return detail::bits_float(sign | ((exponent + 112) << 23) | (fraction << 13));
    if (fraction == 0) return detail::bits_float(sign);
    // Subnormal: normalise the fraction so that its leading one becomes the implicit bit.
    std::uint32_t e = 113;
    while ((fraction & 0x400u) == 0) {
        fraction <<= 1;
        --e;
    }
    return detail::bits_float(sign | (e << 23) | ((fraction & 0x3ffu) << 13));
}

inline std::uint16_t f32_to_f16(float f) noexcept {
    const std::uint32_t x = detail::float_bits(f);
    const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t e = (x >> 23) & 0xffu; // biased f32 exponent
    const std::uint32_t fraction = x & 0x7fffffu;
    if (e == 0xff) // infinity, or NaN: quiet, leading payload bits kept
        return static_cast<std::uint16_t>(sign | 0x7c00u |
                                          (fraction ? 0x0200u | (fraction >> 13) : 0u));
    if (e >= 143) return static_cast<std::uint16_t>(sign | 0x7c00u); // >= 2^16: infinity
    if (e < 102) return sign; // below 2^-25: rounds to zero (2^-25 itself is a tie, to even 0)
    // The result's bits before rounding are `kept`; the `shift` bits dropped decide the rounding.
    // For a normal result (e >= 113) the exponent field is placed above the fraction, so a carry
    // out of the fraction correctly bumps the exponent (and 0x7bff + 1 becomes infinity).
    std::uint32_t kept, dropped, shift;
    if (e >= 113) {
        shift = 13;
        kept = ((e - 112) << 10) | (fraction >> 13);
        dropped = fraction & 0x1fffu;
    } else {
        // Subnormal result: value = (2^23 + fraction) * 2^(e - 150), in units of 2^-24.
        const std::uint32_t mantissa = fraction | 0x800000u;
        shift = 126 - e; // 14 .. 24
        kept = mantissa >> shift;
        dropped = mantissa & ((1u << shift) - 1);
    }
    const std::uint32_t half = 1u << (shift - 1);
    if (dropped > half || (dropped == half && (kept & 1u))) ++kept;
    return static_cast<std::uint16_t>(sign | kept);
}

inline float bf16_to_f32(std::uint16_t b) noexcept {
    return detail::bits_float(std::uint32_t(b) << 16);
}

inline std::uint16_t f32_to_bf16(float f) noexcept {
    const std::uint32_t x = detail::float_bits(f);
    const bool nan = (x & 0x7fffffffu) > 0x7f800000u;
    // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; a carry runs into
    // the exponent, and from the largest finite value into infinity, as it should.
    const std::uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    const std::uint32_t quiet = (x >> 16) | 0x0040u;
    return static_cast<std::uint16_t>(nan ? quiet : rounded);
}

} // namespace actlens

#if ACTLENS_ISA_X86
ACTLENS_ISA_BEGIN("avx,f16c")
namespace actlens::detail::f16c {

// The first n / 8 * 8 elements; returns how many it converted.
ACTLENS_ISA_ENTRY inline std::size_t widen(const std::uint16_t* in, float* out, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
    return i;
}

ACTLENS_ISA_ENTRY inline std::size_t narrow(const float* in, std::uint16_t* out, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return i;
}

} // namespace actlens::detail::f16c
ACTLENS_ISA_END
#endif

namespace actlens {

inline void f16_to_f32(const std::uint16_t* in, float* out, std::size_t n) noexcept {
    std::size_t i = 0;
#if ACTLENS_ISA_X86
    if (detail::cpu_has_f16c()) i = detail::f16c::widen(in, out, n);
#endif
    for (; i < n; ++i)
        out[i] = f16_to_f32(in[i]);
}

inline void f32_to_f16(const float* in, std::uint16_t* out, std::size_t n) noexcept {
    std::size_t i = 0;
#if ACTLENS_ISA_X86
    if (detail::cpu_has_f16c()) i = detail::f16c::narrow(in, out, n);
#endif
    for (; i < n; ++i)
        out[i] = f32_to_f16(in[i]);
}

inline void bf16_to_f32(const std::uint16_t* in, float* out, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i)
        out[i] = bf16_to_f32(in[i]);
}

inline void f32_to_bf16(const float* in, std::uint16_t* out, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i)
        out[i] = f32_to_bf16(in[i]);
}

} // namespace actlens
