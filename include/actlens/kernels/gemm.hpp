// actlens/kernels/gemm.hpp: the dense products of a transformer.
//
// Weights are stored as PyTorch's nn.Linear does, [out, in] row-major, so llama2.c and Hugging Face
// Llama tensors are used in place. The forward product y = x W^T has two implementations:
//
//  - float: a cache-blocked SGEMM of our own, compiled for AVX-512, AVX2 and a baseline in every
//    build and chosen at run time (core/cpu.hpp; README "CPU instruction sets"). On AVX-512 the
//    register tile is 8 rows x 48 columns of y (24 zmm accumulators; x is read in place, one
//    broadcast per element; AVX2: 4 x 24, baseline: 4 x 12), K blocked by 256 and rows by 128, and
//    weights read as K-major panels of 48 output columns, one layout for all, whose elements are f32 or
//    an F16 / BF16 model's own 16-bit values widened in registers (kernels/packed_weight.hpp); a model
//    packs once, at construction (`packed_weight`, one buffer per model: see model/weights.hpp); the
//    plain-pointer overload transposes each 256 x 48 block into a stack buffer as it goes. One row
//    (decode) has its own matrix-vector kernel, and up to 4 rows against unpacked weights are dot
//    products of contiguous rows. Threads (the caller's OpenMP team) split the columns and row blocks into
//    work items taken dynamically, never K: every element is summed in the same order whatever the
//    thread count, and there is no barrier inside a product. Products too small to pay for a
//    fork/join run on the calling thread; `linear_group` runs several products (q, k, v) in one.
//    Nothing is allocated per call.
//  - double: Eigen.
//
// The backward products: input gradients in kernels/gemm_input_grad.hpp (weights read in place),
// kernels/gemm_panel_grad.hpp (read from the forward's panels), or this file's packed product with the
// transposed weights of model/backward_weights.hpp; weight gradients use Eigen for every type.
//
// Threads and shared machines: libgomp's idle threads spin (OMP_WAIT_POLICY unset or active) for
// a while before sleeping; when other processes load the cores that spinning takes the time the
// working threads need, and the 2-thread forward ran up to 10x slower than 1 thread here. Set
// OMP_WAIT_POLICY=passive on a loaded machine (the library never changes process-wide settings).
#pragma once

#include <actlens/kernels/detail/eigen.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/kernels/detail/sgemm.hpp>
#include <actlens/kernels/gemm_rows.hpp>
#include <actlens/kernels/packed_weight.hpp>

#include <cstddef>
#include <type_traits>

namespace actlens::kernels {

/// y[rows, out] (=|+=) x[rows, in] * w[out, in]^T + bias[out]. bias may be null.
/// ldx / ldy are the row strides of x and y (0 means dense). x and y must not overlap.
/// Runs on the calling thread's OpenMP team (omp_get_max_threads()) when the product is large;
/// allocates nothing.
template <class T>
void linear(const T* x, std::size_t rows, std::size_t in, const T* w, std::size_t out,
            const T* bias, T* y, bool accumulate = false, std::size_t ldx = 0, std::size_t ldy = 0);

/// The same product with pre-packed weights (w.out() outputs, w.in() inputs), or weights in their
/// rows (w.is_mapped(): kernels/gemm_rows.hpp; for w.is_transposed() the bias must be null).
template <class T>
void linear(const T* x, std::size_t rows, const packed_weight<T>& w, const T* bias, T* y,
            bool accumulate = false, std::size_t ldx = 0, std::size_t ldy = 0);

/// One product of `linear_group`: y (=|+=) x w^T + bias, with the meaning of the packed `linear`.
template <class T>
struct linear_job {
    const T* x = nullptr;
    std::size_t rows = 0;
    const packed_weight<T>* w = nullptr;
    const T* bias = nullptr;
    T* y = nullptr;
    bool accumulate = false;
    std::size_t ldx = 0, ldy = 0;
};

/// Runs several products as one job: a single parallel region for all of them instead of one
/// each (e.g. the q, k and v projections of a block, which read the same x). The outputs must not
/// overlap each other or any input. Same results as calling `linear` on each.
template <class T>
void linear_group(const linear_job<T>* jobs, std::size_t count);

/// dx[rows, in] (=|+=) dy[rows, out] * w[out, in]: the input gradient of `linear`.
template <class T>
void linear_backward_input(const T* dy, std::size_t rows, std::size_t out, const T* w,
                           std::size_t in, T* dx, bool accumulate = false, std::size_t lddy = 0,
                           std::size_t lddx = 0);

/// dw[out, in] (=|+=) dy[rows, out]^T * x[rows, in]: the weight gradient of `linear` (sum over the
/// rows). lddy / ldx are the row strides of dy and x (0 means dense); dw is dense, like the
/// weights. (The bias gradient, if needed, is the column sum of dy.)
template <class T>
void linear_backward_weight(const T* x, std::size_t rows, std::size_t in, const T* dy,
                            std::size_t out, T* dw, bool accumulate = false, std::size_t ldx = 0,
                            std::size_t lddy = 0);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

template <class T>
void linear_eigen(const T* x, std::size_t rows, std::size_t in, const T* w, std::size_t out,
                  const T* bias, T* y, bool accumulate, std::size_t ldx, std::size_t ldy) {
    auto X = cmap(x, rows, in, ldx);
    auto W = cmap(w, out, in, in);
    auto Y = map(y, rows, out, ldy);
    if (accumulate)
        Y.noalias() += X * W.transpose();
    else
        Y.noalias() = X * W.transpose();
    if (bias)
        Y.rowwise() +=
            Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, Eigen::Index(out));
}

// Empty products: y = bias (or y += bias), or nothing.
template <class T>
void linear_no_inputs(std::size_t rows, std::size_t out, const T* bias, T* y, bool accumulate,
                      std::size_t ldy) {
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < out; ++o) {
            T& v = y[r * ldy + o];
            v = (accumulate ? v : T(0)) + (bias ? bias[o] : T(0));
        }
}

} // namespace detail

template <class T>
void linear(const T* x, std::size_t rows, std::size_t in, const T* w, std::size_t out,
            const T* bias, T* y, bool accumulate, std::size_t ldx, std::size_t ldy) {
    ldx = ldx ? ldx : in;
    ldy = ldy ? ldy : out;
    if (rows == 0 || out == 0) return;
    if (in == 0) return detail::linear_no_inputs(rows, out, bias, y, accumulate, ldy);
    if constexpr (std::is_same_v<T, float>) {
        const detail::sgemm::problem g{x, ldx, rows, in, w, nullptr, dtype::f32, out, bias, y, ldy, accumulate};
        detail::sgemm::run(&g, 1);
        return;
    }
    detail::linear_eigen(x, rows, in, w, out, bias, y, accumulate, ldx, ldy);
}

template <class T>
void linear(const T* x, std::size_t rows, const packed_weight<T>& w, const T* bias, T* y,
            bool accumulate, std::size_t ldx, std::size_t ldy) {
    const std::size_t in = w.in(), out = w.out();
    ldx = ldx ? ldx : in;
    ldy = ldy ? ldy : out;
    if (rows == 0 || out == 0) return;
    if (in == 0) return detail::linear_no_inputs(rows, out, bias, y, accumulate, ldy);
    if constexpr (std::is_same_v<T, float>) {
        if (w.is_mapped() && w.is_transposed())
            return linear_rows_input_grad(x, rows, in, w.rows(), w.format(), out, y, accumulate, ldx, ldy);
        if (w.is_mapped())
            return linear_rows(x, rows, in, w.rows(), w.format(), out, bias, y, accumulate, ldx, ldy,
                               w.precision_mode());
        if (w.is_packed()) {
            const detail::sgemm::problem g{x,   ldx, rows, in,  w.source(), w.panels(), w.element_type(),
                                           out, bias, y, ldy, accumulate};
            detail::sgemm::run(&g, 1);
            return;
        }
    }
    linear(x, rows, in, w.source(), out, bias, y, accumulate, ldx, ldy);
}

template <class T>
void linear_group(const linear_job<T>* jobs, std::size_t count) {
    if constexpr (std::is_same_v<T, float>) {
        detail::sgemm::problem group[detail::sgemm::max_group];
        detail::rows::problem mapped[detail::rows::max_group]; // weights in their rows: one job of their own
        std::size_t n = 0, m = 0;
        for (std::size_t i = 0; i < count; ++i) {
            const linear_job<T>& j = jobs[i];
            const std::size_t in = j.w->in(), out = j.w->out();
            if (j.rows == 0 || out == 0) continue;
            if (in == 0 || !j.w->is_packed()) {
                if (j.w->is_mapped() && !j.w->is_transposed() && in > 0) {
                    mapped[m++] = {j.x,  j.ldx ? j.ldx : in, j.rows, in, static_cast<const unsigned char*>(j.w->rows()),
                                   j.w->format(), weight_row_bytes(j.w->format(), in), out, j.bias, j.y,
                                   j.ldy ? j.ldy : out, j.accumulate, j.w->precision_mode()};
                    if (m == detail::rows::max_group) {
                        detail::rows::run(mapped, m);
                        m = 0;
                    }
                    continue;
                }
                linear(j.x, j.rows, *j.w, j.bias, j.y, j.accumulate, j.ldx, j.ldy);
                continue;
            }
            group[n++] = {j.x,   j.ldx ? j.ldx : in, j.rows, in,  j.w->source(), j.w->panels(), j.w->element_type(),
                          out,   j.bias,             j.y,    j.ldy ? j.ldy : out,           j.accumulate};
            if (n == detail::sgemm::max_group) {
                detail::sgemm::run(group, n);
                n = 0;
            }
        }
        if (n) detail::sgemm::run(group, n);
        if (m) detail::rows::run(mapped, m);
        return;
    }
    for (std::size_t i = 0; i < count; ++i) {
        const linear_job<T>& j = jobs[i];
        linear(j.x, j.rows, *j.w, j.bias, j.y, j.accumulate, j.ldx, j.ldy);
    }
}

template <class T>
void linear_backward_input(const T* dy, std::size_t rows, std::size_t out, const T* w,
                           std::size_t in, T* dx, bool accumulate, std::size_t lddy,
                           std::size_t lddx) {
    auto DY = detail::cmap(dy, rows, out, lddy ? lddy : out);
    auto W = detail::cmap(w, out, in, in);
    auto DX = detail::map(dx, rows, in, lddx ? lddx : in);
    if (accumulate)
        DX.noalias() += DY * W;
    else
        DX.noalias() = DY * W;
}

template <class T>
void linear_backward_weight(const T* x, std::size_t rows, std::size_t in, const T* dy,
                            std::size_t out, T* dw, bool accumulate, std::size_t ldx,
                            std::size_t lddy) {
    auto X = detail::cmap(x, rows, in, ldx ? ldx : in);
    auto DY = detail::cmap(dy, rows, out, lddy ? lddy : out);
    auto DW = detail::map(dw, out, in, in);
    if (accumulate)
        DW.noalias() += DY.transpose() * X;
    else
        DW.noalias() = DY.transpose() * X;
}

} // namespace actlens::kernels
