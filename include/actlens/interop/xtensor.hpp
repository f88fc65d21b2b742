// actlens/interop/xtensor.hpp: a tensor view as an xtensor expression, without a copy, for
// NumPy-style code in notebooks and tests. Optional: include it where xtensor is wanted.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>

#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

#include <xtensor/xadapt.hpp>
#include <xtensor/xstrided_view.hpp>

namespace actlens {

namespace detail {

/// The memory a view addresses, [data, data + span), as a one-dimensional non-owning adaptor.
template <class T>
auto xtensor_span(T* data, std::size_t span) {
    return xt::adapt(data, span, xt::no_ownership(), std::array<std::size_t, 1>{{span}});
}

template <class T>
using xtensor_span_t = decltype(xtensor_span(std::declval<T*>(), std::size_t(0)));

} // namespace detail

/// The type `as_xtensor` returns for a view of T: an xt::xstrided_view of dynamic rank over the
/// view's memory, holding the view's shape and strides. For T = const U it is read-only.
template <class T>
using xtensor_map = xt::xstrided_view<detail::xtensor_span_t<T>, xt::dynamic_shape<std::size_t>>;

/// Adapts a view as an xtensor expression over the same elements, with no copy: writes through it
/// land in the viewed buffer, and it stays valid as long as that buffer does. Dense views get a
/// row-major layout (xtensor's fast linear paths); strided views a dynamic one, so every access
/// goes through the strides. Extents of 1 get stride 0, as xtensor expects for broadcasting.
/// Throws actlens::error (arg.101) for a negative stride.
///
/// (An xt::xarray_adaptor with explicit strides is not used: xtensor 0.24 walks such a container's
/// storage linearly in `fill` and in `a op= scalar`, which writes the wrong elements of a strided
/// view.)
template <class T>
xtensor_map<T> as_xtensor(tensor_view<T> view) {
    xt::dynamic_shape<std::size_t> shape(std::size_t(view.rank()));
    xt::dynamic_shape<std::ptrdiff_t> strides(std::size_t(view.rank()));
    std::size_t span = 1; // from the first addressed element to one past the last
    for (int a = 0; a < view.rank(); ++a) {
        const std::size_t e = view.extent(a);
        const std::ptrdiff_t s = view.stride(a);
        if (s < 0)
            fail(errc::invalid_argument,
                 "as_xtensor: stride {} on axis {} of a view of shape {} is negative", s, a,
                 view.shape().to_string());
        shape[std::size_t(a)] = e;
        strides[std::size_t(a)] = e == 1 ? 0 : s;
        if (e == 0) span = 0;
        if (span != 0) span += (e - 1) * std::size_t(s);
    }
    if (view.rank() == 0 || view.data() == nullptr) span = 0;
    const xt::layout_type layout =
        view.is_contiguous() ? xt::layout_type::row_major : xt::layout_type::dynamic;
    return xtensor_map<T>(detail::xtensor_span(view.data(), span), std::move(shape),
                          std::move(strides), 0, layout);
}

/// A writable adaptor over a tensor's elements.
template <class T>
xtensor_map<T> as_xtensor(tensor<T>& t) {
    return as_xtensor(t.view());
}

/// A read-only adaptor over a tensor's elements.
template <class T>
xtensor_map<const T> as_xtensor(const tensor<T>& t) {
    return as_xtensor(t.view());
}

/// An adaptor over a temporary tensor would dangle.
template <class T>
void as_xtensor(tensor<T>&& t) = delete;

} // namespace actlens
