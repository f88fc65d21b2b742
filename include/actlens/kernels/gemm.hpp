// actlens/kernels/gemm.hpp: the dense products of a transformer, through Eigen.
//
// Weights are stored as PyTorch's nn.Linear does, [out, in] row-major, so llama2.c and Hugging Face
// Llama tensors are used in place; a product with one row goes down Eigen's matrix-vector path,
// which is what decoding one token needs.
#pragma once

#include <actlens/kernels/detail/eigen.hpp>

#include <cstddef>

namespace actlens::kernels {

/// y[rows, out] (=|+=) x[rows, in] * w[out, in]^T + bias[out]. bias may be null.
/// ldx / ldy are the row strides of x and y (0 means dense).
template <class T>
void linear(const T* x, std::size_t rows, std::size_t in, const T* w, std::size_t out, const T* bias, T* y,
            bool accumulate = false, std::size_t ldx = 0, std::size_t ldy = 0) {
    auto X = detail::cmap(x, rows, in, ldx ? ldx : in);
    auto W = detail::cmap(w, out, in, in);
    auto Y = detail::map(y, rows, out, ldy ? ldy : out);
    if (accumulate)
        Y.noalias() += X * W.transpose();
    else
        Y.noalias() = X * W.transpose();
    if (bias) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, Eigen::Index(out));
}

/// dx[rows, in] (=|+=) dy[rows, out] * w[out, in]: the input gradient of `linear`.
template <class T>
void linear_backward_input(const T* dy, std::size_t rows, std::size_t out, const T* w, std::size_t in, T* dx,
                           bool accumulate = false, std::size_t lddy = 0, std::size_t lddx = 0) {
    auto DY = detail::cmap(dy, rows, out, lddy ? lddy : out);
    auto W = detail::cmap(w, out, in, in);
    auto DX = detail::map(dx, rows, in, lddx ? lddx : in);
    if (accumulate)
        DX.noalias() += DY * W;
    else
        DX.noalias() = DY * W;
}

/// dw[out, in] (=|+=) dy[rows, out]^T * x[rows, in]: the weight gradient of `linear` (sum over the
/// rows). lddy / ldx are the row strides of dy and x (0 means dense); dw is dense, like the
/// weights. (The bias gradient, if needed, is the column sum of dy.)
template <class T>
void linear_backward_weight(const T* x, std::size_t rows, std::size_t in, const T* dy,
                            std::size_t out, T* dw, bool accumulate = false, std::size_t ldx = 0,
                            std::size_t lddy = 0) {
    auto X = detail::cmap(x, rows, in, ldx ? ldx : in);
    auto DY = detail::cmap(dy, rows, out, lddy ? lddy : out);
    auto DW = detail::map(dw, out, in, in);
    if (accumulate)
        DW.noalias() += DY.transpose() * X;
    else
        DW.noalias() = DY.transpose() * X;
}

} // namespace actlens::kernels
