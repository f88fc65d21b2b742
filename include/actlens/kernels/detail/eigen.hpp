// actlens/kernels/detail/eigen.hpp: the single place Eigen is included by kernels, and the map
// types they share. Row-major everywhere, unaligned, with an explicit row stride.
#pragma once

#include <Eigen/Core>

#include <cstddef>

namespace actlens::kernels::detail {

template <class T>
using row_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using matrix_map = Eigen::Map<row_major<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using const_matrix_map = Eigen::Map<const row_major<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
matrix_map<T> map(T* p, std::size_t rows, std::size_t cols, std::size_t ld) {
    return matrix_map<T>(p, Eigen::Index(rows), Eigen::Index(cols), Eigen::OuterStride<>(Eigen::Index(ld)));
}
template <class T>
const_matrix_map<T> cmap(const T* p, std::size_t rows, std::size_t cols, std::size_t ld) {
    return const_matrix_map<T>(p, Eigen::Index(rows), Eigen::Index(cols), Eigen::OuterStride<>(Eigen::Index(ld)));
}

} // namespace actlens::kernels::detail
