// tests/isa_checks.hpp: what the tests of the instruction-set kernels share: running a computation
// under every instruction set this CPU has, comparing results bit for bit, and 16-bit weights.
#pragma once

#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/core/cpu.hpp>
#include <actlens/core/dtype.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

namespace isa_checks {

using actlens::isa;

/// Uses `set` for a scope, then restores the instruction set in use before.
class scoped_isa {
public:
    explicit scoped_isa(isa set) : m_previous(actlens::active_isa()) { actlens::set_isa(set); }
    ~scoped_isa() { actlens::set_isa(m_previous); }
    scoped_isa(const scoped_isa&) = delete;
    scoped_isa& operator=(const scoped_isa&) = delete;

private:
    isa m_previous;
};

/// The instruction sets this CPU can run, highest first.
inline std::vector<isa> available() {
    std::vector<isa> sets;
    for (isa set : {isa::avx512, isa::avx2, isa::baseline})
        if (actlens::cpu_supports(set)) sets.push_back(set);
    return sets;
}

/// Runs `run(set)` under every available set; returns the results by set.
template <class Run>
auto on_every_isa(Run run) {
    std::map<isa, decltype(run(isa::baseline))> results;
    for (isa set : available()) {
        INFO("instruction set " << actlens::isa_name(set));
        scoped_isa use(set);
        results.emplace(set, run(set));
    }
    return results;
}

/// AVX-512 and AVX2 compute the same chains of FMAs: equal bits where the CPU has both.
template <class V>
void check_fma_sets_agree(const std::map<isa, V>& results) {
    if (results.count(isa::avx512) && results.count(isa::avx2)) CHECK(results.at(isa::avx512) == results.at(isa::avx2));
}

/// f32 bits of a vector: equality of bits, not of values (which would let -0 == 0 pass).
inline std::vector<std::uint32_t> bits_of(const std::vector<float>& v) {
    std::vector<std::uint32_t> b(v.size());
    std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
    return b;
}

/// `n` weights in [-1, 1] rounded to `type` (f16 or bf16): their bits, and the same values as f32.
/// Every 7th is tiny (|w| < 2^-14, an f16 subnormal; a bf16 with few significant bits), so that
/// the widening of subnormals is exercised too.
inline void rounded_weights(std::mt19937& rng, std::size_t n, actlens::dtype type, std::vector<std::uint16_t>& bits,
                            std::vector<float>& widened) {
    const auto w = kernel_checks::uniform<float>(rng, n, -1, 1);
    bits.resize(n);
    widened.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const float v = i % 7 == 3 ? w[i] * 6e-5f : w[i];
        bits[i] = type == actlens::dtype::f16 ? actlens::f32_to_f16(v) : actlens::f32_to_bf16(v);
        widened[i] = type == actlens::dtype::f16 ? actlens::f16_to_f32(bits[i]) : actlens::bf16_to_f32(bits[i]);
    }
}

/// Checks dx = dx0 * accumulate + dy w (dy [rows, out] with row stride lddy, w [out, in], dx and dx0
/// with row stride lddx) against a long double product, within product_tol, and that the columns
/// past `in` of every row of dx (the gaps of its stride) kept dx0's values.
inline void check_input_grad(const std::vector<float>& dy, const std::vector<float>& w, const std::vector<float>& dx0,
                             const std::vector<float>& dx, std::size_t rows, std::size_t out, std::size_t in,
                             std::size_t lddy, std::size_t lddx, bool accumulate) {
    double worst = 0;
    bool gaps_kept = true;
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t i = 0; i < in; ++i) {
            long double e = accumulate ? (long double)dx0[r * lddx + i] : 0.0L;
            for (std::size_t o = 0; o < out; ++o) e += (long double)dy[r * lddy + o] * w[o * in + i];
            worst = std::max(worst, double(std::abs(dx[r * lddx + i] - e)));
        }
        for (std::size_t i = in; i < lddx; ++i) gaps_kept &= dx[r * lddx + i] == dx0[r * lddx + i];
    }
    CHECK(worst <= double(kernel_checks::product_tol<float>(out)));
    CHECK(gaps_kept);
}

} // namespace isa_checks
