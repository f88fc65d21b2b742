// actlens/kernels/attention.hpp: the two products of one attention head, on strided blocks so that
// heads are read in place from [rows, heads * head_dim] buffers and KV caches.
#pragma once

#include <actlens/kernels/detail/eigen.hpp>

#include <cstddef>

namespace actlens::kernels {

/// s[tq, tk] = scale * q[tq, dh] k[tk, dh]^T (row strides ldq, ldk, lds).
template <class T>
void attention_scores(const T* q, std::size_t ldq, const T* k, std::size_t ldk, std::size_t tq, std::size_t tk,
                      std::size_t dh, T scale, T* s, std::size_t lds) {
    auto Q = detail::cmap(q, tq, dh, ldq);
    auto K = detail::cmap(k, tk, dh, ldk);
    auto S = detail::map(s, tq, tk, lds);
    S.noalias() = scale * (Q * K.transpose());
}

/// z[tq, dh] = p[tq, tk] v[tk, dh] (row strides ldp, ldv, ldz).
template <class T>
void attention_mix(const T* p, std::size_t ldp, const T* v, std::size_t ldv, std::size_t tq, std::size_t tk,
                   std::size_t dh, T* z, std::size_t ldz) {
    auto P = detail::cmap(p, tq, tk, ldp);
    auto V = detail::cmap(v, tk, dh, ldv);
    auto Z = detail::map(z, tq, dh, ldz);
    Z.noalias() = P * V;
}

} // namespace actlens::kernels
