// actlens/methods/concept_importance.hpp: how much a metric depends on each of K concept directions.
//
// CRAFT's concept importance (Fel et al., seed papers) for a transformer: at one hook point, each
// activation row a is split into its concepts' parts and a residual,
//
//   a = Σ_k c_k z_k + r,   c = argmin ‖a − c Z‖² = a Zᵀ (Z Zᵀ)⁻¹   (Z [K, width]: the directions,
//                                                                   e.g. SNMF features),
//
// and a mask m in [0, 1]^K scales the parts: a(m) = Σ_k m_k c_k z_k + r, so m = 1 is the model
// itself and m_k = 0 removes concept k everywhere. The metric of the forward pass with a(m) at the
// hook is f(m); concept_importance returns f's total-order Sobol indices (analysis/sobol.hpp), with
// bootstrap intervals. N (K + 2) forward passes.
#pragma once

#include <actlens/analysis/sobol.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace actlens {

/// Total-order Sobol indices of `metric` over masks of the K concept `directions` [K, width] at
/// `hook_name` (any per-position hook point; width = its trailing size). Throws model.402/403 for a
/// hook the model lacks, arg.102 for directions of another width, arg.101 for linearly dependent
/// directions (named by their Gram matrix), and whatever the forward or the metric throw.
template <class T, class Metric>
sobol_result concept_importance(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                                std::string_view hook_name, tensor_view<const T> directions, const Metric& metric,
                                const sobol_options& options = {}) {
    const hook_point point = hook_point::parse(hook_name);
    hook_layout::of(model.config()).check(point, "concept_importance");
    if (point.site == site::attn_scores || point.site == site::attn_pattern)
        fail(errc::bad_hook_name, "concept_importance: '{}' is not one row per position", hook_name);
    if (directions.rank() != 2 || directions.extent(0) == 0)
        fail(errc::shape_mismatch, "concept_importance: directions must be [K, width] with K >= 1, got {}",
             directions.shape().to_string());
    const std::size_t K = directions.extent(0), width = directions.extent(1);
    // (Z Zᵀ)⁻¹ Z once: the coefficients of a row are then one product.
    Eigen::MatrixXd Z(static_cast<Eigen::Index>(K), static_cast<Eigen::Index>(width));
    for (std::size_t k = 0; k < K; ++k)
        for (std::size_t i = 0; i < width; ++i) Z(Eigen::Index(k), Eigen::Index(i)) = double(directions(k, i));
    const Eigen::MatrixXd gram = Z * Z.transpose();
    const Eigen::LDLT<Eigen::MatrixXd> solver(gram);
    if (solver.info() != Eigen::Success || !(solver.vectorD().minCoeff() > 1e-12 * gram.diagonal().maxCoeff()))
        fail(errc::invalid_argument, "concept_importance: the {} directions are linearly dependent (their Gram matrix is singular)", K);
    const Eigen::MatrixXd project = solver.solve(Z); // [K, width]: c = project · a

    std::vector<double> mask(K, 1.0);
    hook_set<T> hooks;
    hooks.add(point, [&](tensor_view<T> a, const hook_context&) {
        const std::size_t total = a.size();
        if (total % width != 0)
            fail(errc::shape_mismatch, "concept_importance: '{}' has rows of {} values, the directions {}", hook_name,
                 total / (a.extent(0) * a.extent(1)), width);
        T* data = a.data();
        Eigen::VectorXd row(static_cast<Eigen::Index>(width)), c(static_cast<Eigen::Index>(K));
        for (std::size_t r = 0; r < total / width; ++r) {
            T* x = data + r * width;
            for (std::size_t i = 0; i < width; ++i) row(Eigen::Index(i)) = double(x[i]);
            c.noalias() = project * row;
            // a(m) = a − Σ_k (1 − m_k) c_k z_k
            for (std::size_t k = 0; k < K; ++k) {
                const double drop = (1.0 - mask[k]) * c(Eigen::Index(k));
                if (drop == 0.0) continue;
                for (std::size_t i = 0; i < width; ++i) x[i] -= T(drop * double(directions(k, i)));
            }
        }
    });
    run_options<T> run;
    run.hooks = &hooks;
    workspace<T> ws;
    if (!tokens.is_contiguous()) fail(errc::invalid_argument, "concept_importance: tokens must be contiguous");
    auto f = [&](const std::vector<double>& m) {
        mask = m;
        return metric.value(model.forward(ws, tokens, run));
    };
    return sobol_total_indices(K, f, options);
}

} // namespace actlens
