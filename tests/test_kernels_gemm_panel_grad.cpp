// Tests of actlens/kernels/gemm_panel_grad.hpp: dx = dy * w read from w's forward panels (f32, f16 and
// bf16), against a naive long double product on every instruction set this CPU has, at shapes that
// hit every tail (rows and columns of the register tiles, a partial last panel, several K blocks of 8
// panels); AVX-512 and AVX2 bit for bit equal; and the same bits with 1 and 2 threads.
#include "isa_checks.hpp"
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/core/cpu.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/kernels/gemm_panel_grad.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;
using namespace isa_checks;
namespace k = actlens::kernels;
using actlens::dtype;

/// w[out, in] in [-1, 1] rounded to `type`, packed as panels of that type; `values` gets the weights
/// as f32 (what the product must multiply by).
k::packed_weight<float> rounded_panels(std::mt19937& rng, std::size_t out, std::size_t in, dtype type,
                                       std::vector<float>& values) {
    using packed = k::packed_weight<float>;
    if (type == dtype::f32) {
        values = uniform<float>(rng, out * in, -1, 1);
        return packed(values.data(), out, in);
    }
    std::vector<std::uint16_t> bits;
    rounded_weights(rng, out * in, type, bits, values);
    auto storage = k::allocate_packed_storage<unsigned char>(packed::packed_bytes(out, in, type));
    return packed(bits.data(), type, out, in, storage.get(), storage);
}

} // namespace

TEST_CASE("linear_input_grad from panels matches a naive product on every instruction set", "[kernels][isa]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (dtype type : {dtype::f32, dtype::f16, dtype::bf16})
        for (std::size_t rows : {1, 3, 5, 70})
            for (std::size_t out : {1, 47, 48, 49, 400})
                for (std::size_t in : {1, 3, 6, 130}) {
                    const std::size_t lddy = out + rng() % 3, lddx = in + rng() % 3;
                    INFO(actlens::dtype_name(type) << " rows " << rows << " out " << out << " in " << in);
                    std::vector<float> w;
                    const k::packed_weight<float> pw = rounded_panels(rng, out, in, type, w);
                    const auto dy = uniform<float>(rng, rows * lddy, -1, 1);
                    const auto dx0 = uniform<float>(rng, rows * lddx, -1, 1);
                    for (bool accumulate : {false, true}) {
                        INFO("accumulate " << accumulate);
                        const auto results = on_every_isa([&](isa) {
                            auto dx = dx0;
                            k::linear_input_grad(dy.data(), rows, pw, dx.data(), accumulate, lddy, lddx);
                            check_input_grad(dy, w, dx0, dx, rows, out, in, lddy, lddx, accumulate);
                            return bits_of(dx);
                        });
                        check_fma_sets_agree(results);
                    }
                }
}

TEST_CASE("linear_input_grad from panels gives the same bits on 1 and 2 threads", "[kernels][threads]") {
    // Large enough to be threaded (>= 2^20 weights); several row blocks and column items.
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 1100, in = 1000, rows = 130;
    for (dtype type : {dtype::f32, dtype::bf16}) {
        INFO(actlens::dtype_name(type));
        std::vector<float> w;
        const k::packed_weight<float> pw = rounded_panels(rng, out, in, type, w);
        const auto dy = uniform<float>(rng, rows * out, -1, 1);
        std::vector<std::vector<std::uint32_t>> results;
        for (int threads : {1, 2}) {
            k::detail::scoped_threads team(threads);
            std::vector<float> dx(rows * in);
            k::linear_input_grad(dy.data(), rows, pw, dx.data());
            results.push_back(bits_of(dx));
        }
        CHECK(results[0] == results[1]);
    }
}

TEST_CASE("linear_input_grad from panels: double multiplies its weights in place", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 7, in = 5, rows = 3;
    const auto w = uniform<double>(rng, out * in, -1, 1), dy = uniform<double>(rng, rows * out, -1, 1);
    const k::packed_weight<double> pw(w.data(), out, in);
    std::vector<double> a(rows * in), b(rows * in);
    k::linear_input_grad(dy.data(), rows, pw, a.data());
    k::linear_input_grad(dy.data(), rows, out, w.data(), in, b.data());
    // Eigen's product, whose vectorised sums depend on the buffers' alignment: equal to rounding.
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::abs(a[i] - b[i]) <= product_tol<double>(out));
}
