// actlens/methods/steering.hpp: steering vectors: build a direction from contrasting prompts, then
// add it (or project it out) at a residual-stream hook point while the model runs.
//
// Builders:
//   mean_diff_vector  difference of mean activations of a positive and a negative prompt set (CAA);
//   pca_diff_vector   first principal axis of the paired differences h+ - h- (repeng's pca_diff), its
//                     sign aligned with the mean difference.
// Both read one activation per prompt (the last token, or the mean over tokens) and accumulate in
// double, so a vector does not depend on the thread count or on the order of the sums in a kernel.
//
// Application: add_steering adds alpha * v at chosen layers, only at the
// absolute positions of a token_range (prompt, generated, all: the hook reads
// hook_context::position_offset, so it works through generate()'s KV cache), with one alpha per
// batch row if asked, optionally restoring each position's norm. add_ablation removes the component
// along v. The hooks allocate nothing when called.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/detail/symmetric_eigen.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/workspace.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

/// How a steering vector was made.
enum class steering_method { mean_difference, pca_difference, gact, custom };

inline const char* to_string(steering_method m) noexcept {
    switch (m) {
    case steering_method::mean_difference: return "mean_difference";
    case steering_method::pca_difference: return "pca_difference";
    case steering_method::gact: return "gact";
    default: return "custom";
    }
}

/// Which activation of a prompt stands for the prompt.
enum class position_policy {
    last_token,      ///< the last position (repeng, CAA's answer token when it ends the prompt)
    mean_over_tokens ///< the mean over all positions (generic DiffMean)
};

/// A direction at a hook point, with where it came from.
template <class T>
struct steering_vector {
    hook_point point;        ///< where it was measured; by default also where it is added
    tensor<T> direction;     ///< [d_model]
    steering_method method = steering_method::custom;
    double scale = 1.0;      ///< L2 norm of the raw direction when `direction` was unit-normalised, else 1
    std::size_t samples = 0; ///< number of prompts (or pairs) it was built from
    double explained_variance = 0.0; ///< PCA: fraction of the differences' variance along the axis

    int layer() const noexcept { return point.layer; }
    std::size_t size() const noexcept { return direction.size(); }
};

/// Options of the builders.
struct steering_build_options {
    position_policy policy = position_policy::last_token;
    /// True: the i-th positive and i-th negative prompt form a pair (the counts must match).
    bool paired = true;
    /// True: return a unit vector (its former norm goes to steering_vector::scale).
    bool normalize = false;
};

/// A range of absolute token positions [begin, end).
struct token_range {
    std::size_t begin = 0;
    std::size_t end = std::numeric_limits<std::size_t>::max();

    static token_range all() noexcept { return {}; }
    /// The first `prompt_length` positions (ActAdd).
    static token_range prompt(std::size_t prompt_length) noexcept { return {0, prompt_length}; }
    /// Every position from `prompt_length` on: the tokens generated after the prompt (CAA).
    static token_range generated(std::size_t prompt_length) noexcept {
        return {prompt_length, std::numeric_limits<std::size_t>::max()};
    }
    bool contains(std::size_t position) const noexcept { return position >= begin && position < end; }
};

/// Options of add_steering.
struct steering_options {
    double alpha = 1.0;
    /// Layers to steer, each at the vector's site; empty: the vector's own layer.
    std::vector<int> layers;
    token_range tokens;
    /// One alpha per batch row (its size must equal the batch of every forward); empty: `alpha` for all.
    std::vector<double> row_alpha;
    /// Rescale each steered position back to its norm before the addition (repeng's `normalize`).
    bool preserve_norm = false;
};

/// Options of add_ablation.
struct ablation_options {
    std::vector<int> layers; ///< empty: the vector's own layer
    token_range tokens;
};

namespace detail {

// The sites whose activation is [B, T, d_model]: the residual stream and what is added to it.
inline bool is_residual_site(site s) noexcept {
    switch (s) {
    case site::embed:
    case site::pos_embed:
    case site::resid_pre:
    case site::ln1_normalized:
    case site::attn_out:
    case site::resid_mid:
    case site::ln2_normalized:
    case site::ln1_post_normalized:
    case site::ln2_post_normalized:
    case site::mlp_out:
    case site::resid_post:
    case site::ln_final_normalized: return true;
    default: return false;
    }
}

inline void check_residual_point(const hook_point& p, const model_config& c, const char* who) {
    if (!is_residual_site(p.site))
        fail(errc::invalid_argument, "{}: hook point '{}' is not a [B, T, d_model] residual-stream point", who,
             p.name());
    if (is_block_site(p.site) && (p.layer < 0 || p.layer >= static_cast<int>(c.n_layers)))
        fail(errc::bad_layer_range, "{}: hook point '{}' is outside the model's {} layers", who, p.name(),
             c.n_layers);
}

// The block to stop before so that every point of `points` has run (-1: the whole model).
inline int stop_layer_for(const std::vector<hook_point>& points, std::size_t n_layers) {
    int stop = 0;
    for (const hook_point& p : points) {
        if (!is_block_site(p.site)) {
            if (p.site == site::ln_final_normalized) return -1;
            continue;
        }
        stop = std::max(stop, p.layer + 1);
    }
    return stop >= static_cast<int>(n_layers) ? -1 : stop;
}

inline double dot(const double* a, const double* b, std::size_t n) noexcept {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

} // namespace detail

/// Runs every prompt and returns, per point of `points`, one row per prompt ([N, d_model], double):
/// the activation at the last token or the mean over the prompt's tokens. Prompts may differ in
/// length; each runs alone, stopping after the deepest requested block. `options.hooks` (e.g.
/// another steering vector) stay active. Throws actlens::error for an empty prompt list, a point that
/// is not a residual-stream point, or a bad prompt.
template <class T>
std::vector<tensor<double>> collect_activations(const basic_transformer<T>& model,
                                                const std::vector<std::vector<std::int32_t>>& prompts,
                                                const std::vector<hook_point>& points,
                                                position_policy policy = position_policy::last_token,
                                                const run_options<T>& options = {}) {
    const model_config& c = model.config();
    if (prompts.empty()) fail(errc::invalid_argument, "collect_activations: `prompts` is empty");
    if (points.empty()) fail(errc::invalid_argument, "collect_activations: `points` is empty");
    for (const hook_point& p : points) detail::check_residual_point(p, c, "collect_activations");
    const std::size_t d = c.d_model;
    std::vector<tensor<double>> out(points.size());
    for (tensor<double>& t : out) t.resize({prompts.size(), d});

    std::size_t row = 0;
    hook_set<T> hooks;
    if (options.hooks) hooks.merge(*options.hooks);
    for (std::size_t i = 0; i < points.size(); ++i) {
        hooks.add(points[i], [&out, &row, policy, i, d](tensor_view<T> a, const hook_context& ctx) {
            double* dst = &out[i](row, 0);
            const std::size_t n = ctx.positions;
            if (policy == position_policy::last_token) {
                for (std::size_t k = 0; k < d; ++k) dst[k] = double(a(0, n - 1, k));
                return;
            }
            std::fill(dst, dst + d, 0.0);
            for (std::size_t t = 0; t < n; ++t)
                for (std::size_t k = 0; k < d; ++k) dst[k] += double(a(0, t, k));
            for (std::size_t k = 0; k < d; ++k) dst[k] /= double(n);
        });
    }
    run_options<T> run = options;
    run.hooks = &hooks;
    run.cache = nullptr;
    run.stop_at_layer = detail::stop_layer_for(points, c.n_layers);
    run.last_position_only = true;
    workspace<T> ws;
    for (row = 0; row < prompts.size(); ++row) {
        const std::vector<std::int32_t>& p = prompts[row];
        if (p.empty()) fail(errc::empty_prompt, "collect_activations: prompt {} is empty", row);
        model.forward_into(ws, tensor_view<const std::int32_t>(p.data(), {p.size()}), run);
    }
    return out;
}

/// One point: rows [N, d_model] in double.
template <class T>
tensor<double> collect_activations(const basic_transformer<T>& model,
                                   const std::vector<std::vector<std::int32_t>>& prompts, const hook_point& point,
                                   position_policy policy = position_policy::last_token,
                                   const run_options<T>& options = {}) {
    return std::move(collect_activations(model, prompts, std::vector<hook_point>{point}, policy, options).front());
}

/// mean(positive rows) - mean(negative rows), both [N, d] and [M, d]; returns [d].
inline std::vector<double> mean_difference(tensor_view<const double> positive, tensor_view<const double> negative) {
    if (positive.rank() != 2 || negative.rank() != 2 || positive.extent(1) != negative.extent(1))
        fail(errc::shape_mismatch, "mean_difference: positive {} and negative {} must be [N, d] and [M, d]",
             positive.shape().to_string(), negative.shape().to_string());
    if (positive.extent(0) == 0 || negative.extent(0) == 0)
        fail(errc::invalid_argument, "mean_difference: a prompt set is empty (positive {}, negative {})",
             positive.extent(0), negative.extent(0));
    const std::size_t d = positive.extent(1);
    std::vector<double> pos(d, 0.0), neg(d, 0.0);
    for (std::size_t i = 0; i < positive.extent(0); ++i)
        for (std::size_t k = 0; k < d; ++k) pos[k] += positive(i, k);
    for (std::size_t i = 0; i < negative.extent(0); ++i)
        for (std::size_t k = 0; k < d; ++k) neg[k] += negative(i, k);
    for (std::size_t k = 0; k < d; ++k)
        pos[k] = pos[k] / double(positive.extent(0)) - neg[k] / double(negative.extent(0));
    return pos;
}

/// The first principal axis of the rows of `differences` [N, d] (mean-centred, as sklearn's PCA(1)),
/// as a unit vector, with the fraction of variance it explains.
struct principal_axis {
    std::vector<double> axis;
    double explained_variance = 0.0;
};

/// Computes it exactly through the N x N Gram matrix of the centred rows (N is the number of pairs,
/// small next to d): deterministic, no iteration to converge. The sign makes axis . mean(rows) >= 0;
/// when that is 0, the largest-magnitude entry is made positive. Throws actlens::error
/// (invalid_argument) for fewer than two rows or rows that are all equal. A template (of nothing)
/// only so that the eigensolver is compiled where it is called, not in every file that includes
/// this header (README "Compile time").
template <int = 0>
principal_axis first_principal_axis(tensor_view<const double> differences) {
    if (differences.rank() != 2 || differences.extent(1) == 0)
        fail(errc::shape_mismatch, "first_principal_axis: `differences` has shape {}, expected [N, d]",
             differences.shape().to_string());
    const std::size_t n = differences.extent(0), d = differences.extent(1);
    if (n < 2) fail(errc::invalid_argument, "first_principal_axis: needs at least 2 rows, got {}", n);
    std::vector<double> mean(d, 0.0);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t k = 0; k < d; ++k) mean[k] += differences(i, k);
    for (double& m : mean) m /= double(n);
    std::vector<double> centred(n * d);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t k = 0; k < d; ++k) centred[i * d + k] = differences(i, k) - mean[k];
    Eigen::MatrixXd gram(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j <= i; ++j)
            gram(Eigen::Index(i), Eigen::Index(j)) = gram(Eigen::Index(j), Eigen::Index(i)) =
                detail::dot(&centred[i * d], &centred[j * d], d);
    const double total = gram.trace();
    if (!(total > 0.0) || !std::isfinite(total))
        fail(errc::invalid_argument, "first_principal_axis: the {} rows have no variance (trace {})", n, total);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
    if (eig.info() != Eigen::Success)
        fail(errc::non_finite, "first_principal_axis: the eigensolver failed on the {}x{} Gram matrix", n, n);
    const Eigen::Index top = Eigen::Index(n) - 1; // eigenvalues come in increasing order
    principal_axis out;
    out.axis.assign(d, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        const double u = eig.eigenvectors()(Eigen::Index(i), top);
        for (std::size_t k = 0; k < d; ++k) out.axis[k] += u * centred[i * d + k];
    }
    const double norm = std::sqrt(detail::dot(out.axis.data(), out.axis.data(), d));
    for (double& x : out.axis) x /= norm;
    out.explained_variance = eig.eigenvalues()(top) / total;
    double sign = detail::dot(out.axis.data(), mean.data(), d);
    if (sign == 0.0) {
        std::size_t big = 0;
        for (std::size_t k = 1; k < d; ++k)
            if (std::abs(out.axis[k]) > std::abs(out.axis[big])) big = k;
        sign = out.axis[big];
    }
    if (sign < 0.0)
        for (double& x : out.axis) x = -x;
    return out;
}

namespace detail {
template <class T>
steering_vector<T> make_vector(const hook_point& point, const std::vector<double>& v, steering_method method,
                               bool normalize, std::size_t samples) {
    steering_vector<T> out;
    out.point = point;
    out.method = method;
    out.samples = samples;
    double norm = std::sqrt(dot(v.data(), v.data(), v.size()));
    if (!std::isfinite(norm)) fail(errc::non_finite, "steering vector at '{}' is not finite", point.name());
    const double divide = (normalize && norm > 0.0) ? norm : 1.0;
    out.scale = normalize ? norm : 1.0;
    out.direction.resize({v.size()});
    for (std::size_t k = 0; k < v.size(); ++k) out.direction(k) = T(v[k] / divide);
    return out;
}

inline void check_prompt_sets(std::size_t positive, std::size_t negative, bool paired, const char* who) {
    if (positive == 0 || negative == 0)
        fail(errc::invalid_argument, "{}: a prompt set is empty (positive {}, negative {})", who, positive, negative);
    if (paired && positive != negative)
        fail(errc::shape_mismatch, "{}: paired prompt sets differ in size (positive {}, negative {})", who, positive,
             negative);
}
} // namespace detail

/// Difference-in-means vector at `point`: mean over positive prompts minus mean over negative
/// prompts of the activation chosen by `options.policy`. With paired prompts it equals the mean of
/// the pair differences. Throws actlens::error for empty or (when paired) unequal prompt sets.
template <class T>
steering_vector<T> mean_diff_vector(const basic_transformer<T>& model,
                                    const std::vector<std::vector<std::int32_t>>& positive,
                                    const std::vector<std::vector<std::int32_t>>& negative, const hook_point& point,
                                    const steering_build_options& options = {}) {
    detail::check_prompt_sets(positive.size(), negative.size(), options.paired, "mean_diff_vector");
    const tensor<double> pos = collect_activations(model, positive, point, options.policy);
    const tensor<double> neg = collect_activations(model, negative, point, options.policy);
    return detail::make_vector<T>(point, mean_difference(pos.view(), neg.view()), steering_method::mean_difference,
                                  options.normalize, positive.size());
}

/// PCA vector at `point`: the first principal axis of the pair differences h+ - h- (always a unit
/// vector; `scale` is the mean difference's length along it). Needs paired sets of >= 2 pairs.
template <class T>
steering_vector<T> pca_diff_vector(const basic_transformer<T>& model,
                                   const std::vector<std::vector<std::int32_t>>& positive,
                                   const std::vector<std::vector<std::int32_t>>& negative, const hook_point& point,
                                   const steering_build_options& options = {}) {
    detail::check_prompt_sets(positive.size(), negative.size(), /*paired=*/true, "pca_diff_vector");
    const tensor<double> pos = collect_activations(model, positive, point, options.policy);
    tensor<double> diff = collect_activations(model, negative, point, options.policy);
    for (std::size_t i = 0; i < diff.size(); ++i) diff.data()[i] = pos.data()[i] - diff.data()[i];
    const principal_axis pca = first_principal_axis(diff.view());
    steering_vector<T> out = detail::make_vector<T>(point, pca.axis, steering_method::pca_difference, false,
                                                    positive.size());
    double along = 0.0;
    for (std::size_t i = 0; i < diff.extent(0); ++i) along += detail::dot(&diff(i, 0), pca.axis.data(), diff.extent(1));
    out.scale = along / double(diff.extent(0));
    out.explained_variance = pca.explained_variance;
    return out;
}

namespace detail {

// What a steering hook needs, shared by the callbacks of all its layers. Immutable after setup, so
// a const hook_set holding it may run in concurrent forwards.
template <class T>
struct steering_state {
    std::vector<T> direction;
    std::vector<double> unit; // direction / |direction| in double (ablation)
    double alpha = 0.0;
    std::vector<double> row_alpha;
    token_range tokens;
    bool preserve_norm = false;
};

template <class T>
void check_activation(const tensor_view<T>& a, std::size_t d, const hook_context& ctx, const char* who) {
    if (a.rank() != 3 || a.extent(2) != d || a.stride(2) != 1)
        fail(errc::shape_mismatch, "{} at '{}': activation {} does not match a direction of size {}", who,
             ctx.point.name(), a.shape().to_string(), d);
}

template <class T>
std::vector<hook_point> steered_points(const steering_vector<T>& v, const std::vector<int>& layers, const char* who) {
    if (v.direction.rank() != 1 || v.direction.size() == 0)
        fail(errc::shape_mismatch, "{}: direction has shape {}, expected [d_model]", who,
             v.direction.shape().to_string());
    if (!is_residual_site(v.point.site))
        fail(errc::invalid_argument, "{}: hook point '{}' is not a residual-stream point", who, v.point.name());
    for (const T& x : v.direction)
        if (!std::isfinite(double(x))) fail(errc::non_finite, "{}: direction at '{}' is not finite", who, v.point.name());
    if (layers.empty()) return {v.point};
    if (!is_block_site(v.point.site))
        fail(errc::invalid_argument, "{}: `layers` given for '{}', which belongs to no block", who, v.point.name());
    std::vector<hook_point> out;
    for (int l : layers) {
        if (l < 0) fail(errc::bad_layer_range, "{}: layer {} in `layers` is negative", who, l);
        out.push_back({v.point.site, l});
    }
    return out;
}

template <class T>
double norm_of(const T* x, std::size_t d) noexcept {
    double s = 0;
    for (std::size_t k = 0; k < d; ++k) s += double(x[k]) * double(x[k]);
    return std::sqrt(s);
}

} // namespace detail

/// Adds hooks to `hooks` that add `alpha * v.direction` at the vector's site of every steered layer,
/// at the positions of `options.tokens` (absolute positions, so with generate() the range can select
/// the prompt or the generated tokens). A row whose alpha is 0 is left bit-identical. Throws
/// actlens::error for a bad direction, a negative layer, or a non-finite alpha; the hook throws
/// (shape_mismatch) if row_alpha's size differs from the batch or the activation from the direction.
template <class T>
void add_steering(hook_set<T>& hooks, const steering_vector<T>& v, const steering_options& options = {}) {
    const std::vector<hook_point> points = detail::steered_points(v, options.layers, "add_steering");
    if (!std::isfinite(options.alpha)) fail(errc::non_finite, "add_steering: alpha is {}", options.alpha);
    for (double a : options.row_alpha)
        if (!std::isfinite(a)) fail(errc::non_finite, "add_steering: row_alpha holds {}", a);
    if (options.tokens.begin > options.tokens.end)
        fail(errc::invalid_argument, "add_steering: token range [{}, {}) is reversed", options.tokens.begin,
             options.tokens.end);
    auto state = std::make_shared<detail::steering_state<T>>();
    state->direction.assign(v.direction.begin(), v.direction.end());
    state->alpha = options.alpha;
    state->row_alpha = options.row_alpha;
    state->tokens = options.tokens;
    state->preserve_norm = options.preserve_norm;
    auto fn = [state](tensor_view<T> a, const hook_context& ctx) {
        const detail::steering_state<T>& s = *state;
        const std::size_t d = s.direction.size();
        detail::check_activation(a, d, ctx, "add_steering");
        if (!s.row_alpha.empty() && s.row_alpha.size() != ctx.batch)
            fail(errc::shape_mismatch, "add_steering at '{}': row_alpha has {} entries for a batch of {}",
                 ctx.point.name(), s.row_alpha.size(), ctx.batch);
        for (std::size_t b = 0; b < ctx.batch; ++b) {
            const double alpha = s.row_alpha.empty() ? s.alpha : s.row_alpha[b];
            if (alpha == 0.0) continue;
            const T scaled = T(alpha);
            for (std::size_t t = 0; t < ctx.positions; ++t) {
                if (!s.tokens.contains(ctx.position_offset + t)) continue;
                T* x = &a(b, t, 0);
                const double before = s.preserve_norm ? detail::norm_of(x, d) : 0.0;
                for (std::size_t k = 0; k < d; ++k) x[k] += scaled * s.direction[k];
                if (s.preserve_norm) {
                    const double after = detail::norm_of(x, d);
                    if (after > 0.0) {
                        const T ratio = T(before / after);
                        for (std::size_t k = 0; k < d; ++k) x[k] *= ratio;
                    }
                }
            }
        }
    };
    for (const hook_point& p : points) hooks.add(p, fn);
}

/// Adds hooks that project the direction out: x <- x - (x . u) u with u = v / |v|, at the positions
/// of `options.tokens` of every steered layer. Throws actlens::error for a zero or bad direction.
template <class T>
void add_ablation(hook_set<T>& hooks, const steering_vector<T>& v, const ablation_options& options = {}) {
    const std::vector<hook_point> points = detail::steered_points(v, options.layers, "add_ablation");
    const double norm = detail::norm_of(v.direction.data(), v.direction.size());
    if (!(norm > 0.0)) fail(errc::invalid_argument, "add_ablation: direction at '{}' is zero", v.point.name());
    auto state = std::make_shared<detail::steering_state<T>>();
    state->unit.resize(v.direction.size());
    for (std::size_t k = 0; k < v.direction.size(); ++k) state->unit[k] = double(v.direction(k)) / norm;
    state->tokens = options.tokens;
    auto fn = [state](tensor_view<T> a, const hook_context& ctx) {
        const detail::steering_state<T>& s = *state;
        const std::size_t d = s.unit.size();
        detail::check_activation(a, d, ctx, "add_ablation");
        for (std::size_t b = 0; b < ctx.batch; ++b)
            for (std::size_t t = 0; t < ctx.positions; ++t) {
                if (!s.tokens.contains(ctx.position_offset + t)) continue;
                T* x = &a(b, t, 0);
                double along = 0.0;
                for (std::size_t k = 0; k < d; ++k) along += double(x[k]) * s.unit[k];
                for (std::size_t k = 0; k < d; ++k) x[k] = T(double(x[k]) - along * s.unit[k]);
            }
    };
    for (const hook_point& p : points) hooks.add(p, fn);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE principal_axis first_principal_axis<0>(tensor_view<const double>);
#endif

} // namespace actlens
