// tests/ggml_blocks.hpp: weight rows in every format the row kernels read (kernels/weight_format.hpp),
// built here value by value from ggml's block layouts, with the f32 values they stand for: shared by
// the kernel tests and the GGUF model tests.
#pragma once

#include "kernel_checks.hpp"

#include <actlens/core/dtype.hpp>
#include <actlens/kernels/weight_format.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace ggml_blocks {

using actlens::kernels::weight_format;
namespace k = actlens::kernels;

/// Every format the row kernels read.
constexpr weight_format all_formats[] = {weight_format::f32,  weight_format::f16,  weight_format::bf16,
                                         weight_format::q8_0, weight_format::q4_0, weight_format::q4_k,
                                         weight_format::q6_k};

inline void put_f16(unsigned char* p, float v) {
    const std::uint16_t b = actlens::f32_to_f16(v);
    std::memcpy(p, &b, 2);
}

// --- Blocks built from the layout (one value at a time), with the values they stand for -----------

// Q4_0: value i is the low nibble of byte i for i < 16, the high nibble of byte i - 16 for the rest;
// x = d (q - 8).
inline std::vector<float> make_q4_0(std::mt19937& rng, unsigned char* b, float scale) {
    const float d = actlens::f16_to_f32(actlens::f32_to_f16(float(rng() % 1000 + 1) * 1e-4f * scale));
    put_f16(b, d);
    std::vector<float> x(32);
    for (std::size_t i = 0; i < 32; ++i) {
        const unsigned q = rng() % 16;
        unsigned char& byte = b[2 + i % 16];
        byte = i < 16 ? (byte & 0xF0) | q : (byte & 0x0F) | (q << 4);
        x[i] = float((long double)d * (int(q) - 8)); // exact: an 11-bit by 4-bit product
    }
    return x;
}

// Q4_K: sub-block s = i / 32 has a 6-bit scale and min (s < 4: low 6 bits of bytes s and s + 4;
// s >= 4: nibbles of byte s + 4 with the top 2 bits of bytes s - 4 and s); value i is the low
// (i % 64 < 32) or high nibble of qs[32 (i / 64) + i % 32]; x = (d sc) q - dmin m.
inline std::vector<float> make_q4_k(std::mt19937& rng, unsigned char* b, float scale) {
    const float d = actlens::f16_to_f32(actlens::f32_to_f16(float(rng() % 1000 + 1) * 1e-5f * scale));
    const float dmin = actlens::f16_to_f32(actlens::f32_to_f16(float(rng() % 1000 + 1) * 1e-5f * scale));
    put_f16(b, d);
    put_f16(b + 2, dmin);
    unsigned char* s = b + 4;
    std::memset(s, 0, 12);
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
        sc[j] = int(rng() % 64);
        mn[j] = int(rng() % 64);
        if (j < 4) {
            s[j] |= sc[j];
            s[j + 4] |= mn[j];
        } else {
            s[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (mn[j] >> 4) << 6;
        }
    }
    std::vector<float> x(256);
    for (std::size_t i = 0; i < 256; ++i) {
        const unsigned q = rng() % 16;
        unsigned char& byte = b[16 + 32 * (i / 64) + i % 32];
        byte = i % 64 < 32 ? (byte & 0xF0) | q : (byte & 0x0F) | (q << 4);
        const float d1 = d * float(sc[i / 32]), m1 = dmin * float(mn[i / 32]); // exact products
        x[i] = float((long double)d1 * q - (long double)m1);                    // one rounding
    }
    return x;
}

// Q6_K: value i = 128 h + 32 r + l (r < 4, l < 32) has its low 4 bits in the low (r < 2) or high
// nibble of ql[64 h + l + 32 (r % 2)], its top 2 bits at bit 2 r of qh[32 h + l], and the int8
// scale sc[8 h + l / 16 + 2 r]; x = (d sc) (q - 32).
inline std::vector<float> make_q6_k(std::mt19937& rng, unsigned char* b, float scale) {
    const float d = actlens::f16_to_f32(actlens::f32_to_f16(float(rng() % 1000 + 1) * 1e-6f * scale));
    std::memset(b, 0, 208);
    put_f16(b + 208, d);
    auto* sc = reinterpret_cast<std::int8_t*>(b + 192);
    for (int j = 0; j < 16; ++j) sc[j] = std::int8_t(int(rng() % 256) - 128);
    std::vector<float> x(256);
    for (std::size_t i = 0; i < 256; ++i) {
        const std::size_t h = i / 128, r = i % 128 / 32, l = i % 32;
        const unsigned q = rng() % 64;
        unsigned char& low = b[64 * h + l + 32 * (r % 2)];
        low |= r < 2 ? (q & 0xF) : (q & 0xF) << 4;
        b[128 + 32 * h + l] |= (q >> 4) << (2 * r);
        const float ds = d * float(sc[8 * h + l / 16 + 2 * r]); // exact: 11 by 8 bits
        x[i] = float((long double)ds * (int(q) - 32));          // one rounding
    }
    return x;
}

// Q8_0: x = d q.
inline std::vector<float> make_q8_0(std::mt19937& rng, unsigned char* b, float scale) {
    const float d = actlens::f16_to_f32(actlens::f32_to_f16(float(rng() % 1000 + 1) * 1e-4f * scale));
    put_f16(b, d);
    std::vector<float> x(32);
    for (std::size_t i = 0; i < 32; ++i) {
        const auto q = std::int8_t(int(rng() % 256) - 128);
        b[2 + i] = static_cast<unsigned char>(q);
        x[i] = float((long double)d * q);
    }
    return x;
}

/// `out` rows of `in` weights in format f, and their values (what the product must multiply by);
/// `scale` scales the value range (plain types: uniform in [-scale, scale]).
inline std::vector<unsigned char> random_rows(std::mt19937& rng, weight_format f, std::size_t out, std::size_t in,
                                              std::vector<float>& values, float scale = 1.0f) {
    const std::size_t bytes = k::weight_row_bytes(f, in) * out;
    std::vector<unsigned char> rows(bytes);
    values.assign(out * in, 0.0f);
    const std::size_t block = k::weight_block_values(f), block_bytes = k::weight_block_bytes(f);
    for (std::size_t b = 0; b < out * in / block; ++b) {
        unsigned char* at = rows.data() + b * block_bytes;
        std::vector<float> x;
        switch (f) {
        case weight_format::q8_0: x = make_q8_0(rng, at, scale); break;
        case weight_format::q4_0: x = make_q4_0(rng, at, scale); break;
        case weight_format::q4_k: x = make_q4_k(rng, at, scale); break;
        case weight_format::q6_k: x = make_q6_k(rng, at, scale); break;
        default: {
            const float v = kernel_checks::uniform<float>(rng, 1, -scale, scale)[0];
            if (f == weight_format::f32) {
                std::memcpy(at, &v, 4);
                x = {v};
            } else {
                const std::uint16_t bits = f == weight_format::f16 ? actlens::f32_to_f16(v) : actlens::f32_to_bf16(v);
                std::memcpy(at, &bits, 2);
                x = {f == weight_format::f16 ? actlens::f16_to_f32(bits) : actlens::bf16_to_f32(bits)};
            }
        }
        }
        std::copy(x.begin(), x.end(), values.begin() + long(b * block));
    }
    return rows;
}

/// A random forward problem for linear_rows: `out` rows of format f (w: their decoded values),
/// tokens rows of x in [-1, 1] with a row stride ldx a little past `in`, a bias, and y0 (what y
/// holds before the product) with a row stride ldy a little past `out`.
struct rows_problem {
    std::vector<float> w;
    std::vector<unsigned char> rows;
    std::size_t ldx = 0, ldy = 0;
    std::vector<float> x, bias, y0;
};

inline rows_problem random_rows_problem(std::mt19937& rng, weight_format f, std::size_t out, std::size_t in,
                                        std::size_t tokens) {
    rows_problem p;
    p.rows = random_rows(rng, f, out, in, p.w);
    p.ldx = in + rng() % 3;
    p.ldy = out + rng() % 3;
    p.x = kernel_checks::uniform<float>(rng, tokens * p.ldx, -1, 1);
    p.bias = kernel_checks::uniform<float>(rng, out, -1, 1);
    p.y0 = kernel_checks::uniform<float>(rng, tokens * p.ldy, -1, 1);
    return p;
}

} // namespace ggml_blocks
