// tests/fast_checks.hpp: what the tests of the fast precision (kernels/precision.hpp) share: the
// operands it multiplies, computed apart from the library, and its error bound.
#pragma once

#include <catch2/catch.hpp>

#include <actlens/kernels/weight_format.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace fast_checks {

using actlens::kernels::weight_format;

inline constexpr double u = 1.0 / (1 << 24); // f32 unit roundoff

inline double gamma(std::size_t n) { return double(n) * u / (1 - double(n) * u); }

// v rounded to 8 significant bits, nearest even (bf16 of a normal f32), computed apart from the
// library's bit manipulation: frexp gives v = m 2^e with 0.5 <= |m| < 1.
inline long double to_bf16(float v) {
    if (v == 0.0f) return 0.0L;
    int e = 0;
    const double m = std::frexp(double(v), &e);
    return std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);
}

// The operands the fast mode multiplies (kernels/precision.hpp): x rounded per token row of `in`
// values; w the decoded weights, rounded to bf16 for F16 rows. For Q8_0 also the half-step of each
// activation's block, d / 2, for the distance to the exact product.
struct rounded {
    std::vector<long double> x, w, half_step;
};

inline rounded round_operands(weight_format f, const std::vector<float>& x, std::size_t tokens, std::size_t ldx,
                       const std::vector<float>& w, std::size_t in) {
    rounded r;
    r.x.resize(tokens * in);
    r.half_step.assign(tokens * in, 0.0L);
    r.w.assign(w.begin(), w.end());
    if (f == weight_format::f16)
        for (auto& v : r.w) v = to_bf16(float(v));
    for (std::size_t t = 0; t < tokens; ++t) {
        const float* row = x.data() + t * ldx;
        if (f != weight_format::q8_0) {
            for (std::size_t i = 0; i < in; ++i) r.x[t * in + i] = to_bf16(row[i]);
            continue;
        }
        // ggml's q8_0 activations with an f32 scale, rounded to nearest even.
        for (std::size_t b = 0; b < in; b += 32) {
            float amax = 0;
            for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::abs(row[b + i]));
            const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
            for (std::size_t i = 0; i < 32; ++i) {
                const float q = std::nearbyint(row[b + i] * id);
                REQUIRE(std::abs(q) <= 127);
                r.x[t * in + b + i] = (long double)d * q;
                r.half_step[t * in + b + i] = (long double)d / 2;
            }
        }
    }
    return r;
}

// Roundings on any path of a fast-mode element (then |error| <= gamma_n (sum |x w| + |bias| + |y0|),
// Higham, Accuracy and Stability, 2nd ed., eq. 3.4). bf16: products of two bf16 values are exact in
// f32, and each lane adds 2 of them per 32 values (vdpbf16ps: two roundings, or one if fused), then
// 4 levels of the lane tree, the bias and the accumulated value: n = 2 ceil(in / 32) + 6. Q8_0:
// each lane adds one term per K chunk of 512 (a lane holds one block of each: ceil(in / 512)
// additions), a term rounds the scales' product d_w d_x once and its product with the block's exact
// integer sum once (AVX-512 fuses that with the addition; the plain code does not), plus the tree,
// bias and y0: n = ceil(in / 512) + 9.
inline std::size_t fast_roundings(weight_format f, std::size_t in) {
    return f == weight_format::q8_0 ? (in + 511) / 512 + 9 : 2 * ((in + 31) / 32) + 6;
}

} // namespace fast_checks
