// Tests of actlens/core/dtype.hpp: every f16 and bf16 bit pattern against an independent formula
// (ldexp in double), round-to-nearest-even at every midpoint between neighbouring values, and the
// bulk converters (F16C where compiled in) bit for bit against the scalar ones.
#include <actlens/core/dtype.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace actlens;

namespace {

std::uint32_t bits_of(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float float_of(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

/// The value of a finite f16 pattern, from its fields; 0x7c00 (infinity) counts as 2^16, the
/// value the next binade would start at, so midpoints above the largest half are well defined.
double f16_value(std::uint32_t h) {
    const int sign = (h & 0x8000) ? -1 : 1;
    const int e = int((h >> 10) & 0x1f);
    const int m = int(h & 0x3ff);
    if (e == 0) return sign * std::ldexp(double(m), -24);
    return sign * std::ldexp(double(1024 + m), e - 25);
}

/// The value of a finite bf16 pattern (0x7f80 counts as 2^128, as above).
double bf16_value(std::uint32_t b) {
    const int sign = (b & 0x8000) ? -1 : 1;
    const int e = int((b >> 7) & 0xff);
    const int m = int(b & 0x7f);
    if (e == 0) return sign * std::ldexp(double(m), -133);
    return sign * std::ldexp(double(128 + m), e - 134);
}

bool same_float(float a, float b) { return bits_of(a) == bits_of(b); }

} // namespace

TEST_CASE("dtype: sizes and names are the safetensors ones", "[dtype]") {
    CHECK(dtype_size(dtype::f32) == 4);
    CHECK(dtype_size(dtype::bf16) == 2);
    CHECK(dtype_size(dtype::f16) == 2);
    CHECK(dtype_size(dtype::f64) == 8);
    CHECK(dtype_size(dtype::boolean) == 1);
    CHECK(dtype_size(dtype::i64) == 8);
    CHECK(dtype_size(dtype::f8_e4m3) == 1);
    CHECK(std::string(dtype_name(dtype::bf16)) == "BF16");
    CHECK(std::string(dtype_name(dtype::f8_e5m2)) == "F8_E5M2");
    for (dtype t : {dtype::boolean, dtype::u8, dtype::i8, dtype::u16, dtype::i16, dtype::f16,
                    dtype::bf16, dtype::u32, dtype::i32, dtype::f32, dtype::u64, dtype::i64,
                    dtype::f64, dtype::f8_e4m3, dtype::f8_e5m2}) {
        dtype back = dtype::boolean;
        const char* name = dtype_name(t);
        REQUIRE(parse_dtype(name, std::strlen(name), back));
        CHECK(back == t);
    }
    dtype unchanged = dtype::f64;
    CHECK_FALSE(parse_dtype("F3", 2, unchanged));
    CHECK_FALSE(parse_dtype("F32 ", 4, unchanged));
    CHECK_FALSE(parse_dtype("f32", 3, unchanged));
    CHECK(unchanged == dtype::f64);
}

TEST_CASE("dtype: f16 -> f32 is exact for all 65536 patterns", "[dtype]") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float f = f16_to_f32(std::uint16_t(h));
        const std::uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        const std::uint32_t sign = (h & 0x8000u) << 16;
        if (e == 31 && m == 0) {
            REQUIRE(bits_of(f) == (sign | 0x7f800000u));
        } else if (e == 31) {
            // NaN: same sign, payload in the leading fraction bits, quiet bit set.
            REQUIRE(std::isnan(f));
            REQUIRE(bits_of(f) == (sign | 0x7f800000u | (m << 13) | 0x00400000u));
        } else {
            INFO("h = " << h);
            REQUIRE(double(f) == f16_value(h));
            REQUIRE(std::signbit(f) == bool(h & 0x8000));
        }
    }
}

TEST_CASE("dtype: bf16 -> f32 is exact for all 65536 patterns", "[dtype]") {
    for (std::uint32_t b = 0; b < 65536; ++b) {
        const float f = bf16_to_f32(std::uint16_t(b));
        REQUIRE(bits_of(f) == (b << 16)); // the definition: bf16 is the upper half of an f32
        const std::uint32_t e = (b >> 7) & 0xff;
        if (e != 255) {
            INFO("b = " << b);
            REQUIRE(double(f) == bf16_value(b));
        }
    }
}

TEST_CASE("dtype: f32 -> f16 inverts f16 -> f32 and rounds to nearest even at every midpoint",
          "[dtype]") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const std::uint16_t back = f32_to_f16(f16_to_f32(std::uint16_t(h)));
        const bool nan = ((h >> 10) & 0x1f) == 31 && (h & 0x3ff) != 0;
        REQUIRE(back == (nan ? (h | 0x200u) : h));
    }
    // Between each finite half h and the next one up (the largest goes to infinity), of both signs.
    for (std::uint32_t sign : {0u, 0x8000u})
        for (std::uint32_t h = 0; h < 0x7c00; ++h) {
            const double lo = f16_value(sign | h), hi = f16_value(sign | (h + 1));
            const double mid_d = (lo + hi) / 2;
            const float mid = float(mid_d);
            REQUIRE(double(mid) == mid_d); // 12 significant bits: exact in f32
            const float toward_zero = std::nextafter(mid, 0.0f);
            const float away = std::nextafter(mid, sign ? -INFINITY : INFINITY);
            INFO("h = " << h << " sign = " << sign);
            REQUIRE(f32_to_f16(mid) == (sign | ((h & 1) ? h + 1 : h)));
            REQUIRE(f32_to_f16(toward_zero) == (sign | h));
            REQUIRE(f32_to_f16(away) == (sign | (h + 1)));
        }
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
    CHECK(f32_to_f16(65519.99f) == 0x7bff);
    CHECK(f32_to_f16(65520.0f) == 0x7c00);
    CHECK(f32_to_f16(1e10f) == 0x7c00);
    CHECK(f32_to_f16(-std::numeric_limits<float>::max()) == 0xfc00);
    CHECK(f32_to_f16(INFINITY) == 0x7c00);
    CHECK(f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(f32_to_f16(std::numeric_limits<float>::denorm_min()) == 0x0000);
    CHECK(f32_to_f16(-std::numeric_limits<float>::denorm_min()) == 0x8000);
    CHECK(f32_to_f16(-0.0f) == 0x8000);
    // NaNs stay NaNs, whatever bits their payload has (a payload only in the low bits included).
    for (std::uint32_t payload : {1u, 0x1fffu, 0x2000u, 0x400000u, 0x7fffffu}) {
        CHECK(f32_to_f16(float_of(0x7f800000u | payload)) == (0x7e00u | (payload >> 13)));
        CHECK(f32_to_f16(float_of(0xff800000u | payload)) == (0xfe00u | (payload >> 13)));
    }
}

TEST_CASE("dtype: f32 -> bf16 rounds to nearest even at every midpoint", "[dtype]") {
    for (std::uint32_t b = 0; b < 65536; ++b) {
        const bool nan = ((b >> 7) & 0xff) == 255 && (b & 0x7f) != 0;
        REQUIRE(f32_to_bf16(bf16_to_f32(std::uint16_t(b))) == (nan ? (b | 0x40u) : b));
    }
    for (std::uint32_t sign : {0u, 0x8000u})
        for (std::uint32_t b = 0; b < 0x7f80; ++b) {
            const double lo = bf16_value(sign | b), hi = bf16_value(sign | (b + 1));
            const double mid_d = (lo + hi) / 2;
            const float mid = float(mid_d);
            REQUIRE(double(mid) == mid_d);
            const float toward_zero = std::nextafter(mid, 0.0f);
            const float away = std::nextafter(mid, sign ? -INFINITY : INFINITY);
            INFO("b = " << b << " sign = " << sign);
            REQUIRE(f32_to_bf16(mid) == (sign | ((b & 1) ? b + 1 : b)));
            REQUIRE(f32_to_bf16(toward_zero) == (sign | b));
            REQUIRE(f32_to_bf16(away) == (sign | (b + 1)));
        }
    CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80); // rounds up to infinity
    CHECK(f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(f32_to_bf16(-INFINITY) == 0xff80);
    // A NaN whose payload lies only in the dropped half must not round to infinity.
    CHECK(f32_to_bf16(float_of(0x7f800001u)) == 0x7fc0);
    CHECK(f32_to_bf16(float_of(0xffffffffu)) == 0xffff);
    CHECK(f32_to_bf16(float_of(0x7f810000u)) == 0x7fc1);
}

TEST_CASE("dtype: bulk converters give the scalar converters' bits", "[dtype]") {
    // Every 16-bit pattern, starting at an odd element so that loads are unaligned and the
    // length leaves a scalar tail.
    std::vector<std::uint16_t> all(65536 + 3);
    for (std::uint32_t i = 0; i < 65536; ++i)
        all[i + 1] = std::uint16_t(i);
    std::vector<float> out(all.size());
    const std::size_t n = 65536 + 1;
    f16_to_f32(all.data() + 1, out.data() + 1, n);
    for (std::size_t i = 0; i < n; ++i)
        REQUIRE(same_float(out[i + 1], f16_to_f32(all[i + 1])));
    bf16_to_f32(all.data() + 1, out.data() + 1, n);
    for (std::size_t i = 0; i < n; ++i)
        REQUIRE(same_float(out[i + 1], bf16_to_f32(all[i + 1])));

    // Floats: random bit patterns (NaNs, infinities, subnormals included) and f16 midpoints.
    std::mt19937 gen(1234);
    std::vector<float> in;
    for (int i = 0; i < 200000; ++i)
        in.push_back(float_of(gen()));
    for (std::uint32_t h = 0; h < 0x7c00; h += 7)
        in.push_back(float((f16_value(h) + f16_value(h + 1)) / 2));
    for (std::uint32_t special :
         {0x7f800000u, 0xff800000u, 0x7f800001u, 0x7fc00000u, 0xffbfffffu, 0u, 0x80000000u,
          0x00000001u, 0x477ff000u, 0x477fefffu, 0x33000000u, 0x33000001u})
        in.push_back(float_of(special));
    std::vector<std::uint16_t> narrow(in.size());
    f32_to_f16(in.data(), narrow.data(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        INFO("input bits " << bits_of(in[i]));
        REQUIRE(narrow[i] == f32_to_f16(in[i]));
    }
    f32_to_bf16(in.data(), narrow.data(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i)
        REQUIRE(narrow[i] == f32_to_bf16(in[i]));
}
