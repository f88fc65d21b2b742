// Tests of actlens/core/cpu.hpp and of the float kernels of every instruction set this CPU has
// (kernels/detail/sgemm.hpp): each against a naive long double product at shapes that hit every
// tail of every tile shape (AVX-512 8 x 48, AVX2 4 x 24, baseline 4 x 12; K blocks of 256 forward
// and 64 backward; the dot-product path for <= 4 rows of unpacked weights; the one-row path of
// packed weights), AVX2 bit for bit equal to AVX-512 (the same FMAs in the same order), and a model's
// logits the same on every set; panels of f16 / bf16 weights bit for bit equal to f32 panels of the
// same rounded weights, on every set and thread count. ctest also runs the [isa] tests with ACTLENS_ISA=baseline
// (tests/CMakeLists.txt), where the model test compares the forced baseline with the others.
#include "isa_checks.hpp"
#include "kernel_checks.hpp"
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <catch2/catch.hpp>

#include <actlens/core/cpu.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/gemm_input_grad.hpp>

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;
using namespace isa_checks;
using actlens::isa;
namespace k = actlens::kernels;





} // namespace

TEST_CASE("isa: the baseline is always there, and the best set is supported", "[kernels][isa]") {
    CHECK(actlens::cpu_supports(isa::baseline));
    CHECK(actlens::cpu_supports(actlens::best_isa()));
    for (isa set : {isa::avx512, isa::avx2})
        if (actlens::cpu_supports(set)) CHECK(actlens::best_isa() >= set);
    CHECK(std::string(actlens::isa_name(isa::avx512)) == "avx512");
    CHECK(std::string(actlens::isa_name(isa::avx2)) == "avx2");
    CHECK(std::string(actlens::isa_name(isa::baseline)) == "baseline");
}

TEST_CASE("isa: ACTLENS_ISA decides the set in use; bad values are errors naming it", "[kernels][isa]") {
    const char* forced = std::getenv("ACTLENS_ISA");
    INFO("ACTLENS_ISA=" << (forced ? forced : "(unset)"));
    // The value is read once, at the first product; this process's must have been honoured.
    CHECK(actlens::active_isa() == actlens::detail::isa_from_environment(forced));
    for (isa set : available()) CHECK(actlens::detail::isa_from_environment(actlens::isa_name(set)) == set);
    CHECK(actlens::detail::isa_from_environment(nullptr) == actlens::best_isa());
    for (const char* bad : {"avx1024", "", "AVX2", "sse2"})
        require_error([&] { actlens::detail::isa_from_environment(bad); }, actlens::errc::invalid_argument,
                      std::string("ACTLENS_ISA=") + bad + ": unknown instruction set");
    for (isa set : {isa::avx512, isa::avx2}) {
        if (actlens::cpu_supports(set)) continue; // only on a CPU without it
        require_error([&] { actlens::detail::isa_from_environment(actlens::isa_name(set)); },
                      actlens::errc::invalid_argument, "this CPU does not support it");
        require_error([&] { actlens::set_isa(set); }, actlens::errc::invalid_argument, "this CPU does not support it");
    }
}

TEST_CASE("isa: linear on every instruction set matches a naive product", "[kernels][isa]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t rows : {1, 3, 4, 5, 8, 9, 130})
        for (std::size_t in : {1, 17, 300})
            for (std::size_t out : {1, 5, 30, 50, 100}) {
                const std::size_t ldx = in + rng() % 3, ldy = out + rng() % 3;
                INFO("rows " << rows << " in " << in << " out " << out << " ldx " << ldx << " ldy " << ldy);
                const auto x = uniform<float>(rng, rows * ldx, -1, 1), w = uniform<float>(rng, out * in, -1, 1);
                const auto bias = uniform<float>(rng, out, -1, 1), y0 = uniform<float>(rng, rows * ldy, -1, 1);
                for (bool accumulate : {false, true}) {
                    // The naive product, once for all sets.
                    std::vector<long double> expected(rows * out);
                    for (std::size_t r = 0; r < rows; ++r)
                        for (std::size_t o = 0; o < out; ++o) {
                            long double e = (accumulate ? (long double)y0[r * ldy + o] : 0.0L) + bias[o];
                            for (std::size_t i = 0; i < in; ++i) e += (long double)x[r * ldx + i] * w[o * in + i];
                            expected[r * out + o] = e;
                        }
                    const auto results = on_every_isa([&](isa) {
                        std::vector<std::vector<float>> ys;
                        const k::packed_weight<float> packed(w.data(), out, in);
                        REQUIRE(packed.is_packed());
                        for (bool use_packed : {false, true}) {
                            INFO("packed " << use_packed << " accumulate " << accumulate);
                            auto y = y0;
                            if (use_packed)
                                k::linear(x.data(), rows, packed, bias.data(), y.data(), accumulate, ldx, ldy);
                            else
                                k::linear(x.data(), rows, in, w.data(), out, bias.data(), y.data(), accumulate, ldx,
                                          ldy);
                            double worst = 0;
                            bool gaps_kept = true;
                            for (std::size_t r = 0; r < rows; ++r) {
                                for (std::size_t o = 0; o < out; ++o)
                                    worst = std::max(worst, double(std::abs(y[r * ldy + o] - expected[r * out + o])));
                                for (std::size_t o = out; o < ldy; ++o) gaps_kept &= y[r * ldy + o] == y0[r * ldy + o];
                            }
                            CHECK(worst <= double(product_tol<float>(in)));
                            CHECK(gaps_kept);
                            ys.push_back(y);
                        }
                        return ys;
                    });
                    check_fma_sets_agree(results);
                }
            }
}

TEST_CASE("isa: linear_input_grad on every instruction set matches a naive product", "[kernels][isa]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t rows : {5, 9, 130})
        for (std::size_t out : {1, 17, 70})
            for (std::size_t in : {1, 5, 30, 50, 100, 500}) {
                const std::size_t lddy = out + 3, lddx = in + 5;
                INFO("rows " << rows << " out " << out << " in " << in);
                const auto dy = uniform<float>(rng, rows * lddy, -1, 1), w = uniform<float>(rng, out * in, -1, 1);
                const auto dx0 = uniform<float>(rng, rows * lddx, -1, 1);
                for (bool accumulate : {false, true}) {
                    INFO("accumulate " << accumulate);
                    const auto results = on_every_isa([&](isa) {
                        auto dx = dx0;
                        k::linear_input_grad(dy.data(), rows, out, w.data(), in, dx.data(), accumulate, lddy, lddx);
                        check_input_grad(dy, w, dx0, dx, rows, out, in, lddy, lddx, accumulate);
                        return dx;
                    });
                    check_fma_sets_agree(results);
                }
            }
}

TEST_CASE("isa: a model's logits are the same on every instruction set", "[kernels][isa]") {
    // The set in use when the test starts: the best one, or ACTLENS_ISA's (ctest forces the baseline).
    const isa start = actlens::active_isa();
    INFO("started on " << actlens::isa_name(start));
    for (const auto& [name, config] : tiny::all()) {
        INFO(name);
        const auto model = actlens::make_random_transformer<float>(config, 11);
        const auto tokens = tiny::tokens(20, config.vocab_size, 2);
        auto logits = [&] {
            const auto out = model.forward(tokens);
            return std::vector<float>(out.data(), out.data() + out.size());
        };
        const std::vector<float> reference = logits();
        const auto results = on_every_isa([&](isa) { return logits(); });
        check_fma_sets_agree(results);
        for (const auto& [set, result] : results) {
            INFO("on " << actlens::isa_name(set));
            if (set == start) {
                CHECK(result == reference);
            } else {
                // Only the products' rounding differs (the baseline rounds each product before adding
                // it): a few float ulps per product of width <= 40, through 3 layers; 1e-5 of the largest
                // logit leaves margin while a wrong kernel is off by O(1).
                CHECK(rel_err(result, reference) <= 1e-5);
            }
        }
    }
}

namespace {



} // namespace

TEST_CASE("isa: f16 and bf16 panels give the bits of f32 panels of the same rounded weights", "[kernels][isa]") {
    // The kernels widen 16-bit panel values to f32 exactly and then run the f32 chains of FMAs, so
    // the products must agree bit for bit on every set (and each, like f32 panels, within the naive
    // product's tolerance). Shapes hit every tile tail, the one-row path and several K blocks.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (actlens::dtype type : {actlens::dtype::f16, actlens::dtype::bf16})
        for (std::size_t rows : {1, 2, 5, 9, 130})
            for (std::size_t in : {1, 17, 300})
                for (std::size_t out : {1, 5, 30, 50, 100}) {
                    const std::size_t ldx = in + rng() % 3, ldy = out + rng() % 3;
                    INFO(actlens::dtype_name(type) << " rows " << rows << " in " << in << " out " << out);
                    std::vector<std::uint16_t> bits;
                    std::vector<float> w;
                    rounded_weights(rng, out * in, type, bits, w);
                    const auto x = uniform<float>(rng, rows * ldx, -1, 1), bias = uniform<float>(rng, out, -1, 1);
                    const auto y0 = uniform<float>(rng, rows * ldy, -1, 1);
                    using packed = k::packed_weight<float>;
                    auto storage = k::allocate_packed_storage<unsigned char>(packed::packed_bytes(out, in, type));
                    const packed narrow(bits.data(), type, out, in, storage.get(), storage);
                    const packed wide(w.data(), out, in);
                    REQUIRE(narrow.is_packed());
                    CHECK(narrow.element_type() == type);
                    CHECK(narrow.source() == nullptr);
                    for (bool accumulate : {false, true}) {
                        INFO("accumulate " << accumulate);
                        on_every_isa([&](isa) {
                            auto y16 = y0, y32 = y0;
                            k::linear(x.data(), rows, narrow, bias.data(), y16.data(), accumulate, ldx, ldy);
                            k::linear(x.data(), rows, wide, bias.data(), y32.data(), accumulate, ldx, ldy);
                            CHECK(bits_of(y16) == bits_of(y32));
                            double worst = 0;
                            for (std::size_t r = 0; r < rows; ++r)
                                for (std::size_t o = 0; o < out; ++o) {
                                    long double e = (accumulate ? (long double)y0[r * ldy + o] : 0.0L) + bias[o];
                                    for (std::size_t i = 0; i < in; ++i)
                                        e += (long double)x[r * ldx + i] * w[o * in + i];
                                    worst = std::max(worst, double(std::abs(y16[r * ldy + o] - e)));
                                }
                            CHECK(worst <= double(product_tol<float>(in)));
                            return 0;
                        });
                    }
                }
}

TEST_CASE("isa: 16-bit panels give the same bits with 1 and 2 threads, alone and in a group", "[kernels][isa]") {
    // Large enough that the product is threaded (>= 2^20 weights, kernels/detail/sgemm.hpp); the f32
    // panels of the same weights are the reference in every configuration.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t in = 1100, out = 1000;
    using packed = k::packed_weight<float>;
    const float* const no_bias = nullptr;
    for (actlens::dtype type : {actlens::dtype::f16, actlens::dtype::bf16}) {
        INFO(actlens::dtype_name(type));
        std::vector<std::uint16_t> bits;
        std::vector<float> w;
        rounded_weights(rng, out * in, type, bits, w);
        std::vector<float> w2 = uniform<float>(rng, out * in, -1, 1);
        // Packing is itself spread over the team: the panels must not depend on it.
        std::vector<std::shared_ptr<unsigned char>> buffers;
        std::vector<packed> narrow;
        for (int threads : {1, 2}) {
            k::detail::scoped_threads team(threads);
            buffers.push_back(k::allocate_packed_storage<unsigned char>(packed::packed_bytes(out, in, type)));
            narrow.emplace_back(bits.data(), type, out, in, buffers.back().get(), buffers.back());
        }
        const std::size_t bytes = packed::packed_bytes(out, in, type);
        CHECK(std::memcmp(narrow[0].panels(), narrow[1].panels(), bytes) == 0);
        const packed wide(w.data(), out, in), other(w2.data(), out, in);
        for (std::size_t rows : {1, 3, 64}) {
            INFO("rows " << rows);
            const auto x = uniform<float>(rng, rows * in, -1, 1);
            on_every_isa([&](isa) {
                for (int threads : {1, 2}) {
                    INFO("threads " << threads);
                    k::detail::scoped_threads team(threads);
                    std::vector<float> y(rows * out), y2(rows * out);
                    k::linear(x.data(), rows, narrow[std::size_t(threads - 1)], no_bias, y.data());
                    std::vector<float> wide_y(rows * out);
                    k::linear(x.data(), rows, wide, no_bias, wide_y.data());
                    CHECK(bits_of(y) == bits_of(wide_y));
                    // A group mixing 16-bit and f32 panels: one job, the same bits as alone.
                    std::fill(y.begin(), y.end(), 0.0f);
                    const k::linear_job<float> jobs[] = {{x.data(), rows, &narrow[0], nullptr, y.data()},
                                                         {x.data(), rows, &other, nullptr, y2.data()}};
                    k::linear_group(jobs, 2);
                    CHECK(bits_of(y) == bits_of(wide_y));
                    std::vector<float> alone2(rows * out);
                    k::linear(x.data(), rows, other, no_bias, alone2.data());
                    CHECK(bits_of(y2) == bits_of(alone2));
                }
                return 0;
            });
        }
    }
}
