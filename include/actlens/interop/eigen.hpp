// actlens/interop/eigen.hpp: a tensor view as an Eigen::Map, without a copy, for linear algebra
// on activations and weights. Optional: include it where Eigen expressions are wanted.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/detail/eigen.hpp> // the one place Eigen/Core is included

#include <type_traits>

namespace actlens {

/// The type `as_eigen` returns for a view of T: a dynamic, row-major map with run-time outer and
/// inner strides. For T = const U the map is read-only.
template <class T>
using eigen_map =
    Eigen::Map<std::conditional_t<std::is_const_v<T>,
                                  const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic,
                                                      Eigen::Dynamic, Eigen::RowMajor>,
                                  Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic,
                                                Eigen::Dynamic, Eigen::RowMajor>>,
               Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

/// Maps a rank-2 view [rows, cols] to a rows x cols Eigen matrix, and a rank-1 view [n] to an
/// n x 1 column vector, with the view's strides (so slices, row ranges and transposed or
/// every-other-column views map in place). Writes through the map land in the viewed buffer; the
/// map is valid as long as that buffer is. Throws actlens::error (arg.101) for other ranks.
template <class T>
eigen_map<T> as_eigen(tensor_view<T> view) {
    using stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    if (view.rank() == 2)
        return eigen_map<T>(view.data(), Eigen::Index(view.extent(0)), Eigen::Index(view.extent(1)),
                            stride(Eigen::Index(view.stride(0)), Eigen::Index(view.stride(1))));
    if (view.rank() == 1)
        return eigen_map<T>(view.data(), Eigen::Index(view.extent(0)), 1,
                            stride(Eigen::Index(view.stride(0)), 1));
    fail(errc::invalid_argument,
         "as_eigen: a view of shape {} has rank {}; Eigen maps take rank 1 or 2 (slice or "
         "reshape it first)",
         view.shape().to_string(), view.rank());
}

/// A writable map over a tensor's elements (rank 1 or 2).
template <class T>
eigen_map<T> as_eigen(tensor<T>& t) {
    return as_eigen(t.view());
}

/// A read-only map over a tensor's elements (rank 1 or 2).
template <class T>
eigen_map<const T> as_eigen(const tensor<T>& t) {
    return as_eigen(t.view());
}

/// A map over a temporary tensor would dangle.
template <class T>
void as_eigen(tensor<T>&& t) = delete;

} // namespace actlens
