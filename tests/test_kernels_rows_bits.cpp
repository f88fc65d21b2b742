// Tests of the exact bits of actlens/kernels/gemm_rows.hpp's forward and of the vector decoding of
// ggml's blocks (kernels/detail/rows_body.inc). The serving engine relies on a row's result not
// depending on the other rows in the call, the thread count, or the tiling; the kernel documents
// how each element is summed (32 lanes, lane l one chain over k = l mod 32 in K order, joined by
// a halving tree, then the bias, then the accumulated value). Here that sum is
// computed by a plain loop and the kernel must give its bits exactly, on every instruction set
// (FMA chains on AVX-512 and AVX2; separately rounded products and sums on the baseline).
#include "isa_checks.hpp"
#include "ggml_blocks.hpp"
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/core/cpu.hpp>
#include <actlens/kernels/gemm_rows.hpp>
#include <actlens/kernels/weight_format.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace rows_bits_test {

using namespace isa_checks;
namespace k = actlens::kernels;
using k::weight_format;
using ggml_blocks::all_formats;

// The kernel's sum of y[t, o], written out: lane l multiplies x[k] w[k] for k = l, l + 32, ... over
// `in` rounded up to 32 (the values past `in` are zeros on both sides, as the kernel's masked loads
// and zero-padded rows give), starting from 0; the lanes are joined as rows_body.inc's reduce32
// joins them: l + (l + 16), then + 8, + 4, + 2, + 1 apart.
float lane_order_sum(const float* x, const float* w, std::size_t in, bool fma, float bias, bool has_bias, float y0,
                     bool accumulate) {
    float lane[32];
    const std::size_t padded = (in + 31) / 32 * 32;
    for (std::size_t l = 0; l < 32; ++l) {
        float acc = 0.0f;
        for (std::size_t i = l; i < padded; i += 32) {
            const float a = i < in ? x[i] : 0.0f, b = i < in ? w[i] : 0.0f;
            if (fma) {
                acc = std::fma(a, b, acc);
            } else {
                const volatile float product = a * b; // rounded to f32 before the sum, as the baseline does
                acc = product + acc;
            }
        }
        lane[l] = acc;
    }
    for (std::size_t half = 16; half >= 1; half /= 2)
        for (std::size_t l = 0; l < half; ++l) lane[l] = lane[l] + lane[l + half];
    float s = lane[0];
    if (has_bias) s += bias;
    return accumulate ? y0 + s : s;
}

// Lengths with partial 32-lane groups and partial K chunks (plain types), whole blocks otherwise.
std::vector<std::size_t> lengths(weight_format f) {
    switch (k::weight_block_values(f)) {
    case 32: return {32, 544, 1056};
    case 256: return {256, 768};
    default: return {16, 300, 513, 1040};
    }
}

} // namespace rows_bits_test

TEST_CASE("linear_rows gives the bits of its documented lane order for any number of tokens, on every instruction set",
          "[kernels][isa]") {
    using namespace rows_bits_test;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (weight_format f : all_formats)
        for (std::size_t in : lengths(f))
            for (std::size_t out : {1, 5, 19}) {
                const std::size_t tokens = 70;
                INFO(k::weight_format_name(f) << " out " << out << " in " << in);
                const ggml_blocks::rows_problem pr = ggml_blocks::random_rows_problem(rng, f, out, in, tokens);
                const std::vector<float>&w = pr.w, &x = pr.x, &bias = pr.bias, &y0 = pr.y0;
                const std::vector<unsigned char>& rows = pr.rows;
                const std::size_t ldx = pr.ldx, ldy = pr.ldy;
                for (bool accumulate : {false, true})
                    for (isa set : available()) {
                        INFO("instruction set " << actlens::isa_name(set) << " accumulate " << accumulate);
                        scoped_isa use(set);
                        const bool fma = set != isa::baseline;
                        std::vector<float> expect = y0;
                        for (std::size_t t = 0; t < tokens; ++t)
                            for (std::size_t o = 0; o < out; ++o)
                                expect[t * ldy + o] =
                                    lane_order_sum(x.data() + t * ldx, w.data() + o * in, in, fma, bias[o], true,
                                                   y0[t * ldy + o], accumulate);
                        // Every token count the kernel tiles differently: one token (decode), a register
                        // tile's worth, a partial one, a token block of 64 and a partial second block.
                        for (std::size_t count : {1, 2, 3, 4, 7, 64, 70}) {
                            INFO("tokens " << count);
                            std::vector<float> y = y0;
                            k::linear_rows(x.data(), count, in, rows.data(), f, out, bias.data(), y.data(), accumulate,
                                           ldx, ldy);
                            std::vector<float> want = y0;
                            std::copy(expect.begin(), expect.begin() + long(count * ldy), want.begin());
                            CHECK(bits_of(y) == bits_of(want));
                        }
                        // Without a bias, from the second token on (rows of x that start elsewhere).
                        std::vector<float> y(tokens * ldy, 0.0f), want(tokens * ldy, 0.0f);
                        k::linear_rows(x.data() + ldx, tokens - 1, in, rows.data(), f, out, nullptr, y.data(), false,
                                       ldx, ldy);
                        for (std::size_t t = 0; t + 1 < tokens; ++t)
                            for (std::size_t o = 0; o < out; ++o)
                                want[t * ldy + o] = lane_order_sum(x.data() + (t + 1) * ldx, w.data() + o * in, in, fma,
                                                                   0.0f, false, 0.0f, false);
                        CHECK(bits_of(y) == bits_of(want));
                    }
            }
}

TEST_CASE("linear_rows gives the bits of its lane order on 2 threads, for a threaded product", "[kernels][threads]") {
    using namespace rows_bits_test;
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 520, in = 2048, tokens = 67;
    for (weight_format f : {weight_format::f16, weight_format::q6_k}) {
        INFO(k::weight_format_name(f));
        const ggml_blocks::rows_problem pr = ggml_blocks::random_rows_problem(rng, f, out, in, tokens);
        const bool fma = actlens::active_isa() != isa::baseline;
        k::detail::scoped_threads team(2);
        std::vector<float> y(tokens * pr.ldy, 0.0f), want(tokens * pr.ldy, 0.0f);
        k::linear_rows(pr.x.data(), tokens, in, pr.rows.data(), f, out, pr.bias.data(), y.data(), false, pr.ldx, pr.ldy);
        for (std::size_t t = 0; t < tokens; ++t)
            for (std::size_t o = 0; o < out; ++o)
                want[t * pr.ldy + o] = lane_order_sum(pr.x.data() + t * pr.ldx, pr.w.data() + o * in, in, fma,
                                                      pr.bias[o], true, 0.0f, false);
        CHECK(bits_of(y) == bits_of(want));
    }
}

namespace rows_bits_test {

// decode<F> of instruction set `set` on `count` values from k0 of a row (into a 64-byte aligned buffer).
template <weight_format F>
void decode_on(isa set, const unsigned char* row, std::size_t k0, std::size_t count, float* dst) {
    switch (set) {
#if ACTLENS_ISA_X86
    case isa::avx512: k::detail::avx512::rowdot::decode<F>(row, k0, count, dst); return;
    case isa::avx2: k::detail::avx2::rowdot::decode<F>(row, k0, count, dst); return;
#endif
    default: k::detail::baseline::rowdot::decode<F>(row, k0, count, dst); return;
    }
}

template <weight_format F>
void check_vector_decoding(std::mt19937& rng) {
    INFO(k::weight_format_name(F));
    constexpr std::size_t blocks = 6, in = blocks * k::weight_block_values(F);
    for (int trial = 0; trial < 30; ++trial) {
        std::vector<float> values;
        // Scales over the whole f16 range the generator gives (0.05 to 20 times the default).
        const float scale = trial % 3 == 0 ? 0.05f : trial % 3 == 1 ? 1.0f : 20.0f;
        const std::vector<unsigned char> row = ggml_blocks::random_rows(rng, F, 1, in, values, scale);
        std::vector<float> scalar(in);
        k::decode_values(F, row.data(), 0, in, scalar.data());
        for (isa set : available()) {
            INFO("instruction set " << actlens::isa_name(set));
            alignas(64) float decoded[in];
            decode_on<F>(set, row.data(), 0, in, decoded);
            CHECK(bits_of(std::vector<float>(decoded, decoded + in)) == bits_of(scalar));
            // From the second block on.
            const std::size_t from = k::weight_block_values(F);
            decode_on<F>(set, row.data(), from, in - from, decoded);
            CHECK(bits_of(std::vector<float>(decoded, decoded + in - from)) ==
                  bits_of(std::vector<float>(scalar.begin() + long(from), scalar.end())));
        }
    }
}

} // namespace rows_bits_test

TEST_CASE("vector decoding of Q4_0, Q4_K and Q6_K blocks gives the scalar decode_block's bits on every instruction set",
          "[kernels][isa]") {
    using namespace rows_bits_test;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    check_vector_decoding<weight_format::q4_0>(rng);
    check_vector_decoding<weight_format::q4_k>(rng);
    check_vector_decoding<weight_format::q6_k>(rng);
    // Random bytes, not only blocks the generator builds: every bit pattern of the fields.
    for (isa set : available()) {
        INFO("instruction set " << actlens::isa_name(set));
        for (int trial = 0; trial < 200; ++trial) {
            unsigned char block[210];
            for (unsigned char& b : block) b = static_cast<unsigned char>(rng());
            // Finite scales: exponent bits of the f16 scales below the maximum.
            block[1] &= 0x7B;
            block[3] &= 0x7B;
            block[209] &= 0x7B;
            alignas(64) float got[256];
            float want[256];
            k::decode_block(weight_format::q4_k, block, want);
            decode_on<weight_format::q4_k>(set, block, 0, 256, got);
            CHECK(bits_of(std::vector<float>(got, got + 256)) == bits_of(std::vector<float>(want, want + 256)));
            k::decode_block(weight_format::q6_k, block, want);
            decode_on<weight_format::q6_k>(set, block, 0, 256, got);
            CHECK(bits_of(std::vector<float>(got, got + 256)) == bits_of(std::vector<float>(want, want + 256)));
            block[1] &= 0x7B;
            k::decode_block(weight_format::q4_0, block, want);
            decode_on<weight_format::q4_0>(set, block, 0, 32, got);
            CHECK(bits_of(std::vector<float>(got, got + 32)) == bits_of(std::vector<float>(want, want + 32)));
        }
    }
}
