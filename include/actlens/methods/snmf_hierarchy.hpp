// actlens/methods/snmf_hierarchy.hpp: features of features — SNMF fitted level by level.
//
// Shafran, Geiger & Geva (arXiv 2506.10920) find neuron combinations reused across related
// features, a hierarchy in the MLP's activation space, by factorising again: level 1 fits the data,
// A ≈ G₁ F₁ (A [n, d] tokens × neurons, G₁ [n, r₁] ≥ 0, F₁ [r₁, d] the features), and level ℓ fits
// the features of level ℓ − 1 as data, F_{ℓ−1} ≈ H_ℓ F_ℓ (H_ℓ [r_{ℓ−1}, r_ℓ] ≥ 0), with r₁ > r₂ > ….
// Then all factors are tuned together on the data, A ≈ G₁ H₂ ⋯ H_L F_L, by Adam on the mean squared
// error (500 steps at learning rate 1e-3 in the authors' code), projecting G₁ and the H_ℓ onto ≥ 0
// after each step. A level-ℓ feature is then F_ℓ = H_{ℓ+1} ⋯ H_L F_L: a non-negative mix of the top
// level's features, which is what makes the hierarchy readable (feature i of level ℓ − 1 uses
// feature k of level ℓ with weight H_ℓ[i, k]).
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/deferred.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/snmf.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <vector>

namespace actlens {

struct snmf_hierarchy_options {
    std::vector<std::size_t> ranks;  ///< r₁ > r₂ > … (at least one)
    snmf_options level;              ///< options of every level's fit (its rank is replaced by r_ℓ)
    std::size_t fine_tune_steps = 500;
    double learning_rate = 1e-3;
};

struct snmf_hierarchy {
    std::vector<snmf_result> levels;    ///< the fit of each level before tuning (level ℓ's data: level ℓ−1's features)
    tensor<float> coefficients;         ///< G₁ [n, r₁] after tuning
    std::vector<tensor<float>> mixing;  ///< H₂ … H_L after tuning, H_ℓ [r_{ℓ−1}, r_ℓ]
    std::vector<tensor<float>> features;///< F₁ … F_L after tuning, F_ℓ [r_ℓ, d]
    std::vector<double> fine_tune_loss; ///< mean squared error before each Adam step, then after the last
};

namespace detail {

using hierarchy_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The factors of a hierarchy: G₁, H₂ … H_L, F_L. `Matrix` is hierarchy_matrix; fit_snmf_hierarchy
/// spells it as a deferred type so that the products are compiled only where it is called
/// (core/deferred.hpp).
template <class Matrix = hierarchy_matrix>
struct basic_hierarchy_factors {
    Matrix g;
    std::vector<Matrix> h;
    Matrix f;
};
using hierarchy_factors = basic_hierarchy_factors<>;

/// Mean squared error of A ≈ G₁ H₂ ⋯ H_L F_L and its gradients (same shapes as the factors).
template <class Matrix>
double hierarchy_loss_and_gradients(const Matrix& a, const basic_hierarchy_factors<Matrix>& x,
                                    basic_hierarchy_factors<Matrix>& grad) {
    const std::size_t L = x.h.size();
    // left[ℓ] = G₁ H₂ ⋯ H_{ℓ+1} (left[0] = G₁); right[ℓ] = H_{ℓ+2} ⋯ H_L F_L (right[L] = F_L).
    std::vector<Matrix> left(L + 1), right(L + 1);
    left[0] = x.g;
    for (std::size_t l = 0; l < L; ++l) left[l + 1] = left[l] * x.h[l];
    right[L] = x.f;
    for (std::size_t l = L; l-- > 0;) right[l] = x.h[l] * right[l + 1];
    const Matrix residual = left[L] * x.f - a;
    const double scale = 1.0 / (double(a.rows()) * double(a.cols()));
    const double loss = double(residual.template cast<double>().squaredNorm()) * scale;
    const Matrix d = residual * float(2.0 * scale); // dLoss/dP
    grad.f = left[L].transpose() * d;
    grad.g = d * right[0].transpose();
    grad.h.resize(L);
    for (std::size_t l = 0; l < L; ++l) grad.h[l] = (left[l].transpose() * d) * right[l + 1].transpose();
    return loss;
}

} // namespace detail

/// Fits the hierarchy to `activations` [n, d] (in memory: the joint tuning reads A every step).
/// Throws arg.101 for no rank, ranks that do not decrease, or a bad learning rate, and as fit_snmf.
/// A template (of nothing) only so that the fit is compiled where it is called (README "Compile time").
template <class Deferred = void>
snmf_hierarchy fit_snmf_hierarchy(tensor_view<const float> activations, const snmf_hierarchy_options& o) {
    if (o.ranks.empty()) fail(errc::invalid_argument, "fit_snmf_hierarchy: options.ranks is empty");
    for (std::size_t l = 1; l < o.ranks.size(); ++l)
        if (o.ranks[l] >= o.ranks[l - 1])
            fail(errc::invalid_argument, "fit_snmf_hierarchy: ranks must decrease, but rank {} is {} after {}", l,
                 o.ranks[l], o.ranks[l - 1]);
    if (!(o.learning_rate > 0.0) || !std::isfinite(o.learning_rate))
        fail(errc::invalid_argument, "fit_snmf_hierarchy: learning_rate = {} must be positive", o.learning_rate);
    snmf_hierarchy out;
    tensor_view<const float> data = activations;
    for (std::size_t r : o.ranks) {
        snmf_options lo = o.level;
        lo.rank = r;
        out.levels.push_back(fit_snmf(data, lo));
        data = out.levels.back().features.view();
    }
    using hierarchy_matrix = detail::deferred_t<detail::hierarchy_matrix, Deferred>;
    using factors = detail::basic_hierarchy_factors<hierarchy_matrix>;
    auto to_matrix = [](const tensor<float>& t) {
        return hierarchy_matrix(Eigen::Map<const hierarchy_matrix>(t.data(), Eigen::Index(t.extent(0)), Eigen::Index(t.extent(1))));
    };
    const std::size_t n = activations.extent(0), d = activations.extent(1), L = o.ranks.size();
    hierarchy_matrix a(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
    for (std::size_t t = 0; t < n; ++t)
        for (std::size_t i = 0; i < d; ++i) a(Eigen::Index(t), Eigen::Index(i)) = activations(t, i);
    factors x, grad, m, v;
    x.g = to_matrix(out.levels.front().coefficients);
    for (std::size_t l = 1; l < L; ++l) x.h.push_back(to_matrix(out.levels[l].coefficients));
    x.f = to_matrix(out.levels.back().features);
    auto zero_like = [](const factors& f) {
        factors z;
        z.g = hierarchy_matrix::Zero(f.g.rows(), f.g.cols());
        for (const auto& h : f.h) z.h.push_back(hierarchy_matrix::Zero(h.rows(), h.cols()));
        z.f = hierarchy_matrix::Zero(f.f.rows(), f.f.cols());
        return z;
    };
    m = zero_like(x);
    v = zero_like(x);
    // Adam (Kingma & Ba 2015, algorithm 1; β₁ = 0.9, β₂ = 0.999, ε = 1e-8), then G and H onto >= 0.
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = float(o.learning_rate);
    auto adam = [&](hierarchy_matrix& p, const hierarchy_matrix& g, hierarchy_matrix& mm, hierarchy_matrix& vv,
                    std::size_t step, bool nonnegative) {
        mm = b1 * mm + (1.0f - b1) * g;
        vv = b2 * vv + (1.0f - b2) * g.cwiseProduct(g);
        const float c1 = 1.0f - std::pow(b1, float(step)), c2 = 1.0f - std::pow(b2, float(step));
        p.array() -= lr * (mm.array() / c1) / ((vv.array() / c2).sqrt() + eps);
        if (nonnegative) p = p.cwiseMax(0.0f);
    };
    for (std::size_t step = 1; step <= o.fine_tune_steps; ++step) {
        out.fine_tune_loss.push_back(detail::hierarchy_loss_and_gradients(a, x, grad));
        adam(x.g, grad.g, m.g, v.g, step, true);
        for (std::size_t l = 0; l + 1 < L; ++l) adam(x.h[l], grad.h[l], m.h[l], v.h[l], step, true);
        adam(x.f, grad.f, m.f, v.f, step, false);
    }
    out.fine_tune_loss.push_back(detail::hierarchy_loss_and_gradients(a, x, grad));

    auto to_tensor = [](const hierarchy_matrix& mat) {
        tensor<float> t({std::size_t(mat.rows()), std::size_t(mat.cols())});
        Eigen::Map<hierarchy_matrix>(t.data(), mat.rows(), mat.cols()) = mat;
        return t;
    };
    out.coefficients = to_tensor(x.g);
    for (const auto& h : x.h) out.mixing.push_back(to_tensor(h));
    out.features.resize(L);
    hierarchy_matrix f = x.f;
    out.features[L - 1] = to_tensor(f);
    for (std::size_t l = L - 1; l-- > 0;) {
        f = x.h[l] * f;
        out.features[l] = to_tensor(f);
    }
    return out;
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE snmf_hierarchy fit_snmf_hierarchy<void>(tensor_view<const float>,
                                                                 const snmf_hierarchy_options&);
#endif

} // namespace actlens
