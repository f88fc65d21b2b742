// actlens/kernels/gemm_panel_grad.hpp: the input gradient of a linear layer read from the weights'
// forward panels, dx = dy * w with w a packed_weight.
//
// The backward pass's input gradients multiply by the same weights the forward does. Reading them
// from the forward's panels (kernels/packed_weight.hpp, of any element type: f32, f16 or bf16
// widened in registers) needs no other copy of the weights: not the f32 values of a 16-bit model's
// projections (model/weight_tensor.hpp), nor the transposed panels of model/backward_weights.hpp.
// Each element of dx is a dot product of a row of dy with a column of w, which the panels hold in
// runs of 48 contiguous terms (kernels/detail/panel_grad_body.inc has the kernel). Threads (the
// caller's OpenMP team) split rows and columns of dx, never the sum: every element is summed in one
// order whatever the thread count, and AVX-512 and AVX2 give the same bits. Nothing is allocated.
#pragma once

#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/gemm_input_grad.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace actlens::kernels {

/// dx[rows, in] (=|+=) dy[rows, out] * w[out, in] with w's packed panels (w.out() outputs, w.in()
/// inputs); lddy / lddx are the row strides of dy and dx (0 means dense). Weights in their rows
/// (w.is_mapped()) are read there (kernels/gemm_rows.hpp); unpacked weights (double) are multiplied in
/// place (linear_input_grad on w.source()). dx must not overlap dy.
template <class T>
void linear_input_grad(const T* dy, std::size_t rows, const packed_weight<T>& w, T* dx, bool accumulate = false,
                       std::size_t lddy = 0, std::size_t lddx = 0);

namespace detail::panel_grad {

constexpr std::size_t block_panels = 8; // panels (384 terms of each sum) per K block: dy's block stays in L2
constexpr std::size_t mc = 64;          // rows per work item
constexpr std::size_t nc = 128;         // columns of dx per work item

struct problem {
    const float* dy;
    std::size_t lddy, rows, out;
    const void* packed; // the panels [out / 48][in][48]
    dtype type;         // their elements
    std::size_t in;
    float* dx;
    std::size_t lddx;
    bool accumulate;
};

} // namespace detail::panel_grad

#define ACTLENS_ISA_BODY <actlens/kernels/detail/panel_grad_body.inc>
#include <actlens/kernels/detail/each_isa.inc>

namespace detail::panel_grad {

inline void run(const problem& g) {
    const auto compute_block = ACTLENS_ISA_SELECT(pgrad::compute_block);
    const std::size_t col_items = (g.in + nc - 1) / nc, row_blocks = (g.rows + mc - 1) / mc;
    const double flops = 2.0 * double(g.rows) * double(g.out) * double(g.in);
    // As in kernels/gemm.hpp: thread only products of >= 32 MFLOP, or few-row products that stream
    // >= 1 M weights (two cores read memory faster than one).
    const bool parallel =
        gemm_threads() > 1 && (flops >= 32e6 || double(g.out) * double(g.in) >= double(1 << 20));
    for_items(long(col_items * row_blocks), parallel, [&](long item) {
        const std::size_t rb = std::size_t(item) / col_items, ci = std::size_t(item) % col_items;
        const std::size_t r0 = rb * mc, c0 = ci * nc;
        compute_block(g, r0, std::min(mc, g.rows - r0), c0, std::min(g.in, c0 + nc));
    });
}

} // namespace detail::panel_grad

template <class T>
void linear_input_grad(const T* dy, std::size_t rows, const packed_weight<T>& w, T* dx, bool accumulate,
                       std::size_t lddy, std::size_t lddx) {
    const std::size_t out = w.out(), in = w.in();
    if constexpr (std::is_same_v<T, float>) {
        if (w.is_mapped() && !w.is_transposed())
            return linear_rows_input_grad(dy, rows, out, w.rows(), w.format(), in, dx, accumulate, lddy, lddx);
        if (w.is_packed() && rows > 0 && in > 0 && out > 0) {
            detail::panel_grad::run(detail::panel_grad::problem{dy, lddy ? lddy : out, rows, out, w.panels(),
                                                                w.element_type(), in, dx, lddx ? lddx : in,
                                                                accumulate});
            return;
        }
    }
    linear_input_grad(dy, rows, out, w.source(), in, dx, accumulate, lddy, lddx);
}

} // namespace actlens::kernels
