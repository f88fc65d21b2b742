// Tests of actlens/kernels/gemm_input_grad.hpp: linear_input_grad (dx = dy * w) against a naive
// long double product, at shapes that hit every tail of the fast float path (row tiles of 8, the
// items of up to 8 column panels of 48, K blocks of 64, row blocks of 128, Eigen for <= 4 rows), with
// accumulation and row strides, in float and double; and against linear_backward_input (Eigen).
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/gemm_input_grad.hpp>

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;
namespace k = actlens::kernels;

// A sum of K products of terms in [-1, 1]: rounding error ~ K u; (K + 1) * 2e-6 is ample for float
// while a transposed or misindexed operand is off by O(1).
template <class T>
double tol(std::size_t K) {
    return (sizeof(T) == 4 ? 2e-6 : 1e-15) * double(K + 1);
}

// Runs linear_input_grad on strided buffers (row strides lddy = out + 3, lddx = in + 5, with
// sentinels in the gaps) and checks every element, and that the gaps were not written.
template <class T>
void check_shape(std::mt19937& rng, std::size_t rows, std::size_t out, std::size_t in, bool accumulate,
                 bool strided) {
    const std::size_t lddy = strided ? out + 3 : out, lddx = strided ? in + 5 : in;
    const auto dy = uniform<T>(rng, rows * lddy, -1, 1);
    const auto w = uniform<T>(rng, out * in, -1, 1);
    auto dx = uniform<T>(rng, rows * lddx, -1, 1);
    const auto before = dx;
    k::linear_input_grad(dy.data(), rows, out, w.data(), in, dx.data(), accumulate, strided ? lddy : 0,
                         strided ? lddx : 0);
    double worst = 0;
    bool gaps_kept = true;
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t i = 0; i < in; ++i) {
            long double sum = accumulate ? (long double)before[r * lddx + i] : 0.0L;
            for (std::size_t o = 0; o < out; ++o) sum += (long double)dy[r * lddy + o] * (long double)w[o * in + i];
            worst = std::max(worst, double(std::fabs(sum - (long double)dx[r * lddx + i])));
        }
        for (std::size_t i = in; i < lddx; ++i) gaps_kept = gaps_kept && dx[r * lddx + i] == before[r * lddx + i];
    }
    INFO("rows " << rows << " out " << out << " in " << in << " accumulate " << accumulate << " strided "
                 << strided);
    CHECK(worst <= tol<T>(out));
    CHECK(gaps_kept);
}

} // namespace

TEST_CASE("linear_input_grad matches a naive product at every tail", "[kernels][gemm_input_grad]") {
    std::mt19937 rng(42);
    for (std::size_t rows : {1, 3, 4, 5, 8, 9, 17, 130})
        for (std::size_t out : {1, 17, 256, 300})
            for (std::size_t in : {1, 16, 47, 48, 49, 100, 400}) {
                const bool accumulate = (rows + out + in) % 2 == 0;
                const bool strided = (rows + in) % 3 == 0;
                check_shape<float>(rng, rows, out, in, accumulate, strided);
            }
    check_shape<double>(rng, 9, 300, 49, true, true);
    check_shape<double>(rng, 2, 17, 100, false, false);
}

TEST_CASE("linear_input_grad equals linear_backward_input on model-sized products", "[kernels][gemm_input_grad]") {
    std::mt19937 rng(7);
    // GPT-2-small-like shapes: d_model 768, d_mlp 3072 (threaded: >= 32 MFLOP).
    for (const auto& s : {std::vector<std::size_t>{64, 768, 3072}, {64, 3072, 768}, {1, 768, 3072}, {200, 768, 768}}) {
        const std::size_t rows = s[0], out = s[1], in = s[2];
        const auto dy = uniform<float>(rng, rows * out, -1, 1);
        const auto w = uniform<float>(rng, out * in, -1, 1);
        std::vector<float> fast(rows * in, 1.0f), eigen(rows * in, 1.0f);
        k::linear_input_grad(dy.data(), rows, out, w.data(), in, fast.data(), true);
        k::linear_backward_input(dy.data(), rows, out, w.data(), in, eigen.data(), true);
        double worst = 0;
        for (std::size_t i = 0; i < fast.size(); ++i) worst = std::max(worst, double(std::fabs(fast[i] - eigen[i])));
        INFO("rows " << rows << " out " << out << " in " << in);
        CHECK(worst <= 2 * tol<float>(out));
    }
}

TEST_CASE("linear_input_grad with no terms writes zeros or leaves dx", "[kernels][gemm_input_grad]") {
    const float dy = 0;
    const float w = 0;
    std::vector<float> dx(6, 3.0f);
    k::linear_input_grad(&dy, 2, 0, &w, 3, dx.data(), true);
    CHECK(dx == std::vector<float>(6, 3.0f));
    k::linear_input_grad(&dy, 2, 0, &w, 3, dx.data(), false);
    CHECK(dx == std::vector<float>(6, 0.0f));
}
