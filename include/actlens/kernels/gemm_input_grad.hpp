// actlens/kernels/gemm_input_grad.hpp: the input gradient of a linear layer, dx = dy * w, fast.
//
// The backward pass's largest products: dx[rows, in] (=|+=) dy[rows, out] * w[out, in], with w in
// nn.Linear's [out, in] layout, which for this product is already K-major (row k of w holds the k-th
// term of every output column). So, unlike the forward (kernels/gemm.hpp), no transposed or
// pre-packed copy of the weights is needed:
//
//  - float: register tiles of 8 rows x 48 columns of dx on AVX-512 (24 zmm accumulators; AVX2:
//    4 x 24, baseline: 4 x 12, chosen at run time as for the forward, core/cpu.hpp) read w in place,
//    one slice of a row per K step (K = out), prefetching the next K block. A work item owns up to 8
//    panels of 48 columns and 128 rows; threads (the caller's OpenMP team) split items, never K, so
//    each element is summed in one order whatever the thread count. Small products run on the calling
//    thread; nothing is allocated. Up to 4 rows (in effect a matrix-vector product) go to Eigen's GEMV
//    path. Measured with AVX-512 on one core at 64 rows (GPT-2-small shapes, weights streamed from
//    memory): ~120-135 GFLOP/s against Eigen's ~85-110 (the forward's pre-packed kernel: ~180-200).
//  - double: kernels::linear_backward_input (Eigen).
#pragma once

#include <actlens/kernels/gemm.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace actlens::kernels {

/// dx[rows, in] (=|+=) dy[rows, out] * w[out, in]; lddy / lddx are the row strides of dy and dx
/// (0 means dense). Same meaning as linear_backward_input; dx must not overlap dy or w.
template <class T>
void linear_input_grad(const T* dy, std::size_t rows, std::size_t out, const T* w, std::size_t in, T* dx,
                       bool accumulate = false, std::size_t lddy = 0, std::size_t lddx = 0);

namespace detail::input_grad {

constexpr std::size_t kc = 64;        // K block (rows of w)
constexpr std::size_t mc = 128;       // row block
constexpr std::size_t max_panels = 8; // panels of 48 columns per work item: runs of up to 384 columns of w
constexpr std::size_t few_rows = 4;   // up to this many rows go to Eigen's matrix-vector path

struct problem {
    const float* dy;
    std::size_t lddy, rows, out;
    const float* w;
    std::size_t in;
    float* dx;
    std::size_t lddx;
    bool accumulate;
};

} // namespace detail::input_grad

// The register tiles are the forward kernel's (kernels/detail/sgemm_body.inc); only the way B is
// read differs (w in place, strided and masked, instead of a packed aligned panel).
#define ACTLENS_ISA_BODY <actlens/kernels/detail/input_grad_body.inc>
#include <actlens/kernels/detail/each_isa.inc>

namespace detail::input_grad {

// A template of nothing, so that the Eigen product it falls back to is compiled only in files that
// run a backward pass, not in every file that includes this header (README "Compile time").
template <int = 0>
void run(const problem& g) {
    if (g.rows <= few_rows) { // matrix-vector-like: Eigen's path reads w once, without a copy
        linear_backward_input(g.dy, g.rows, g.out, g.w, g.in, g.dx, g.accumulate, g.lddy, g.lddx);
        return;
    }
    const auto compute_block = ACTLENS_ISA_SELECT(grad::compute_block);
    const std::size_t nr = sgemm::nr;
    const std::size_t panels = (g.in + nr - 1) / nr, row_blocks = (g.rows + mc - 1) / mc;
    const double flops = 2.0 * double(g.rows) * double(g.out) * double(g.in);
    const int threads = kernels::detail::gemm_threads();
    // As in kernels/gemm.hpp: thread only products of >= 32 MFLOP, or few-row products that stream
    // >= 1 M weights (two cores read memory faster than one).
    const bool parallel = threads > 1 && (flops >= 32e6 || double(g.out) * double(g.in) >= double(1 << 20));
    // Wide items (long contiguous reads of w), but at least one per thread.
    const std::size_t per_item =
        parallel ? std::clamp<std::size_t>((panels + std::size_t(threads) - 1) / std::size_t(threads), 1, max_panels)
                 : max_panels;
    const std::size_t panel_items = (panels + per_item - 1) / per_item;
    kernels::detail::for_items(long(panel_items * row_blocks), parallel, [&](long item) {
        const std::size_t rb = std::size_t(item) / panel_items, pi = std::size_t(item) % panel_items;
        const std::size_t p0 = pi * per_item, p1 = std::min(panels, p0 + per_item);
        const std::size_t r0 = rb * mc;
        compute_block(g, r0, std::min(mc, g.rows - r0), p0, p1);
    });
}

} // namespace detail::input_grad

template <class T>
void linear_input_grad(const T* dy, std::size_t rows, std::size_t out, const T* w, std::size_t in, T* dx,
                       bool accumulate, std::size_t lddy, std::size_t lddx) {
    if constexpr (std::is_same_v<T, float>) {
        lddy = lddy ? lddy : out;
        lddx = lddx ? lddx : in;
        if (rows == 0 || in == 0) return;
        if (out == 0) {
            if (!accumulate)
                for (std::size_t r = 0; r < rows; ++r) std::fill(dx + r * lddx, dx + r * lddx + in, 0.0f);
            return;
        }
        detail::input_grad::run(detail::input_grad::problem{dy, lddy, rows, out, w, in, dx, lddx, accumulate});
        return;
    }
    linear_backward_input(dy, rows, out, w, in, dx, accumulate, lddy, lddx);
}

} // namespace actlens::kernels
