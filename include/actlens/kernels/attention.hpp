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

/// z[tq, dh] (=|+=) p[tq, tk] v[tk, dh] (row strides ldp, ldv, ldz). `accumulate` adds, for keys
/// split over two buffers (a cached prefix and new positions).
template <class T>
void attention_mix(const T* p, std::size_t ldp, const T* v, std::size_t ldv, std::size_t tq, std::size_t tk,
                   std::size_t dh, T* z, std::size_t ldz, bool accumulate = false) {
    auto P = detail::cmap(p, tq, tk, ldp);
    auto V = detail::cmap(v, tk, dh, ldv);
    auto Z = detail::map(z, tq, dh, ldz);
    if (accumulate)
        Z.noalias() += P * V;
    else
        Z.noalias() = P * V;
}

/// Backward of `attention_scores`: given ds[tq, tk] = dL/ds (row stride lds),
///   dq[tq, dh] (+|=) scale * ds k      and      dk[tk, dh] (+|=) scale * ds^T q,
/// on strided blocks like the forward (row strides lddq, lddk). With `accumulate` (the default)
/// the results are added, so that heads sharing a key head (GQA) sum into one dk and several
/// contributions to one dq need no temporary. dq or dk may be null to skip that product.
template <class T>
void attention_scores_backward(const T* ds, std::size_t lds, const T* q, std::size_t ldq,
                               const T* k, std::size_t ldk, std::size_t tq, std::size_t tk,
                               std::size_t dh, T scale, T* dq, std::size_t lddq, T* dk,
                               std::size_t lddk, bool accumulate = true) {
    auto DS = detail::cmap(ds, tq, tk, lds);
    if (dq) {
        auto K = detail::cmap(k, tk, dh, ldk);
        auto DQ = detail::map(dq, tq, dh, lddq);
        if (accumulate)
            DQ.noalias() += scale * (DS * K);
        else
            DQ.noalias() = scale * (DS * K);
    }
    if (dk) {
        auto Q = detail::cmap(q, tq, dh, ldq);
        auto DK = detail::map(dk, tk, dh, lddk);
        if (accumulate)
            DK.noalias() += scale * (DS.transpose() * Q);
        else
            DK.noalias() = scale * (DS.transpose() * Q);
    }
}

/// Backward of `attention_mix` (z = p v): given dz[tq, dh] = dL/dz (row stride lddz),
///   dp[tq, tk] = dz v^T   (overwritten: it feeds `softmax_causal_backward` next), and
///   dv[tk, dh] += p^T dz  (added: heads sharing a value head under GQA sum into one dv).
/// dp or dv may be null to skip that product. Masked entries of p are 0, so they add nothing to dv;
/// dp is computed on the full block and the softmax backward ignores its masked part.
template <class T>
void attention_mix_backward(const T* dz, std::size_t lddz, const T* p, std::size_t ldp, const T* v,
                            std::size_t ldv, std::size_t tq, std::size_t tk, std::size_t dh, T* dp,
                            std::size_t lddp, T* dv, std::size_t lddv) {
    auto DZ = detail::cmap(dz, tq, dh, lddz);
    if (dp) {
        auto V = detail::cmap(v, tk, dh, ldv);
        auto DP = detail::map(dp, tq, tk, lddp);
        DP.noalias() = DZ * V.transpose();
    }
    if (dv) {
        auto P = detail::cmap(p, tq, tk, ldp);
        auto DV = detail::map(dv, tk, dh, lddv);
        DV.noalias() += P.transpose() * DZ;
    }
}

} // namespace actlens::kernels
