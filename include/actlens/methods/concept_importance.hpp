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
// bootstrap intervals. N (K + 2) forward passes. methods/concept_recursion.hpp applies the same split
// one layer further down, to the sub-concepts of one concept.
#pragma once

#include <actlens/analysis/sobol.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace actlens {

/// Total-order Sobol indices of `metric` over masks of the K concept `directions` [K, width] at
/// `hook_name` (any per-position hook point; width = its trailing size). Throws model.402/403 for a
/// hook the model lacks, arg.102 for directions of another width, arg.101 for linearly dependent
/// directions (named by their Gram matrix), arg.104 for a NaN or infinity in them, and whatever the
/// forward or the metric throw.
template <class T, class Metric>
sobol_result concept_importance(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                                std::string_view hook_name, tensor_view<const T> directions, const Metric& metric,
                                const sobol_options& options = {});

namespace detail {

/// The split a = c Z + r of activation rows onto K directions Z [K, width] (c = a Zᵀ (Z Zᵀ)⁻¹), and
/// its masked form a(m) = a − Σ_k (1 − m_k) c_k z_k. Holds scratch: one object per thread.
class concept_split {
public:
    /// Throws arg.102 unless `directions` is [K, width] with K >= 1, arg.104 for a NaN or infinity,
    /// arg.101 when the directions are linearly dependent. `who` starts the messages.
    template <class U>
    concept_split(tensor_view<const U> directions, std::string_view who) {
        if (directions.rank() != 2 || directions.extent(0) == 0 || directions.extent(1) == 0)
            fail(errc::shape_mismatch, "{}: directions must be [K, width] with K >= 1, got {}", who,
                 directions.shape().to_string());
        const auto K = Eigen::Index(directions.extent(0)), width = Eigen::Index(directions.extent(1));
        m_directions.resize(K, width);
        for (Eigen::Index k = 0; k < K; ++k)
            for (Eigen::Index i = 0; i < width; ++i) {
                const double z = double(directions(std::size_t(k), std::size_t(i)));
                if (!std::isfinite(z)) fail(errc::non_finite, "{}: direction {} holds {} at {}", who, k, z, i);
                m_directions(k, i) = z;
            }
        // (Z Zᵀ)⁻¹ Z once: the coefficients of a row are then one product.
        const Eigen::MatrixXd gram = m_directions * m_directions.transpose();
        const Eigen::LDLT<Eigen::MatrixXd> solver(gram);
        if (solver.info() != Eigen::Success || !(solver.vectorD().minCoeff() > 1e-12 * gram.diagonal().maxCoeff()))
            fail(errc::invalid_argument, "{}: the {} directions are linearly dependent (their Gram matrix is singular)",
                 who, K);
        m_project = solver.solve(m_directions);
        m_row.resize(width);
        m_coefficients.resize(K);
    }

    std::size_t concepts() const noexcept { return std::size_t(m_directions.rows()); }
    std::size_t width() const noexcept { return std::size_t(m_directions.cols()); }

    /// c_k of the row at `x` (values `stride` apart).
    template <class T>
    double coefficient(const T* x, std::ptrdiff_t stride, std::size_t k) const {
        double c = 0.0;
        for (Eigen::Index i = 0; i < m_project.cols(); ++i) c += m_project(Eigen::Index(k), i) * double(x[i * stride]);
        return c;
    }

    /// Replaces the row at `x` by a(m); `mask` has K entries.
    template <class T>
    void mask_row(T* x, std::ptrdiff_t stride, const std::vector<double>& mask) {
        const Eigen::Index width = m_directions.cols();
        for (Eigen::Index i = 0; i < width; ++i) m_row(i) = double(x[i * stride]);
        m_coefficients.noalias() = m_project * m_row;
        for (Eigen::Index k = 0; k < m_directions.rows(); ++k) {
            const double drop = (1.0 - mask[std::size_t(k)]) * m_coefficients(k);
            if (drop == 0.0) continue;
            for (Eigen::Index i = 0; i < width; ++i) x[i * stride] -= T(drop * m_directions(k, i));
        }
    }

private:
    Eigen::MatrixXd m_directions, m_project; // Z and (Z Zᵀ)⁻¹ Z, both [K, width]
    Eigen::VectorXd m_row, m_coefficients;
};

/// The point `hook_name` names, checked to be in the model and to hold one row per position.
template <class T>
hook_point per_position_hook(const basic_transformer<T>& model, std::string_view hook_name, std::string_view who) {
    const hook_point point = hook_point::parse(hook_name);
    hook_layout::of(model.config()).check(point, who);
    if (point.site == site::attn_scores || point.site == site::attn_pattern)
        fail(errc::bad_hook_name, "{}: '{}' is not one row per position", who, hook_name);
    return point;
}

/// The activation a hook receives as [B, T, width] (a per-head [B, T, H, d_h] one flattened).
template <class T>
tensor_view<T> activation_rows(tensor_view<T> a) {
    return a.rank() == 4 ? a.reshaped({a.extent(0), a.extent(1), a.extent(2) * a.extent(3)}) : a;
}

} // namespace detail

template <class T, class Metric>
sobol_result concept_importance(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                                std::string_view hook_name, tensor_view<const T> directions, const Metric& metric,
                                const sobol_options& options) {
    const hook_point point = detail::per_position_hook(model, hook_name, "concept_importance");
    detail::concept_split split(directions, "concept_importance");
    const std::size_t K = split.concepts(), width = split.width();
    if (!tokens.is_contiguous()) fail(errc::invalid_argument, "concept_importance: tokens must be contiguous");

    std::vector<double> mask(K, 1.0);
    hook_set<T> hooks;
    hooks.add(point, [&](tensor_view<T> activation, const hook_context&) {
        const tensor_view<T> a = detail::activation_rows(activation);
        if (a.extent(2) != width)
            fail(errc::shape_mismatch, "concept_importance: '{}' has rows of {} values, the directions {}", hook_name,
                 a.extent(2), width);
        for (std::size_t b = 0; b < a.extent(0); ++b)
            for (std::size_t t = 0; t < a.extent(1); ++t) split.mask_row(&a(b, t, 0), a.stride(2), mask);
    });
    run_options<T> run;
    run.hooks = &hooks;
    workspace<T> ws;
    auto f = [&](const std::vector<double>& m) {
        mask = m;
        return metric.value(model.forward_into(ws, tokens, run));
    };
    return sobol_total_indices(K, f, options);
}

} // namespace actlens
