// actlens/methods/gact.hpp: G-ACT, steering with several directions chosen per token by a probe
// ("Steering Conceptual Bias via Transformer Latent-Subspace Activation", 2025; where the paper leaves
// a parameter open, the default here is this library's choice and says so).
//
//   1. Per prompt pair i and layer l: d_i = h_l(x_i+) - h_l(x_i-) (last token or mean over tokens).
//   2. k-means++ (seeded, deterministic) on the unit-normalised d_i gives K clusters; v_k is the
//      normalised centroid; each pair is labelled by its cluster.
//   3. A softmax probe per layer, p(k | h) = softmax(W z + b) with z the standardised activation,
//      is trained with Adam on (h_l(x_i+), label_i) and (h_l(x_i-), label_i): it learns which
//      direction fits a context, whichever side of the contrast it is on.
//   4. Online refinement: for a prompt, the cluster whose injection most raises the log-probability
//      of target tokens becomes the label of a gradient step on the probe.
//   5. The hook adds alpha * sum_k p(k | h) v_k at the selected layers, at every position in range.
#pragma once

#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

namespace actlens {

/// Largest number of G-ACT clusters (the hook keeps its K probabilities on the stack).
inline constexpr std::size_t gact_max_clusters = 16;

// ---------------------------------------------------------------------------------------------
// k-means
// ---------------------------------------------------------------------------------------------

/// Result of k-means. Non-convergence within the iteration limit is reported, not thrown.
struct kmeans_result {
    tensor<double> centroids;        ///< [K, d]
    std::vector<std::size_t> labels; ///< cluster of each row
    double inertia = 0.0;            ///< sum of squared distances to the assigned centroid
    std::size_t iterations = 0;
    bool converged = false;
};

/// Lloyd's k-means on the rows of `points` [N, d] with k-means++ seeding from `seed`. Deterministic:
/// the same input and seed give the same result on any machine (ties go to the lower index; an
/// emptied cluster takes the point farthest from its centroid). Throws actlens::error for k = 0,
/// k > N, or non-finite input.
inline kmeans_result kmeans(tensor_view<const double> points, std::size_t k, std::uint64_t seed,
                            std::size_t max_iterations = 300) {
    if (points.rank() != 2 || points.extent(1) == 0)
        fail(errc::shape_mismatch, "kmeans: `points` has shape {}, expected [N, d]", points.shape().to_string());
    const std::size_t n = points.extent(0), d = points.extent(1);
    if (k == 0 || k > n) fail(errc::invalid_argument, "kmeans: k = {} must be in 1..{} (the number of points)", k, n);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < d; ++j)
            if (!std::isfinite(points(i, j))) fail(errc::non_finite, "kmeans: points[{}, {}] is not finite", i, j);
    auto dist2 = [&](std::size_t i, const double* c) {
        double s = 0;
        for (std::size_t j = 0; j < d; ++j) s += (points(i, j) - c[j]) * (points(i, j) - c[j]);
        return s;
    };
    kmeans_result r;
    r.centroids.resize({k, d});
    rng gen(seed);
    // k-means++: the first centre uniformly, each next one with probability proportional to the
    // squared distance to the nearest centre chosen so far.
    std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
    std::size_t pick = static_cast<std::size_t>(gen.uniform() * double(n));
    for (std::size_t c = 0; c < k; ++c) {
        for (std::size_t j = 0; j < d; ++j) r.centroids(c, j) = points(pick, j);
        double total = 0;
        for (std::size_t i = 0; i < n; ++i) {
            nearest[i] = std::min(nearest[i], dist2(i, &r.centroids(c, 0)));
            total += nearest[i];
        }
        if (c + 1 == k) break;
        if (total > 0) {
            double target = gen.uniform() * total;
            pick = n - 1;
            for (std::size_t i = 0; i < n; ++i) {
                if (nearest[i] <= 0) continue;
                if (target < nearest[i]) {
                    pick = i;
                    break;
                }
                target -= nearest[i];
            }
            while (nearest[pick] <= 0) --pick; // rounding landed past the last candidate
        } else {
            pick = (pick + 1) % n; // all points coincide with a centre: any point will do
        }
    }
    r.labels.assign(n, 0);
    std::vector<std::size_t> count(k);
    for (r.iterations = 1; r.iterations <= max_iterations; ++r.iterations) {
        bool changed = r.iterations == 1;
        r.inertia = 0;
        for (std::size_t i = 0; i < n; ++i) {
            std::size_t best = 0;
            double best_d = dist2(i, &r.centroids(0, 0));
            for (std::size_t c = 1; c < k; ++c) {
                const double dc = dist2(i, &r.centroids(c, 0));
                if (dc < best_d) best = c, best_d = dc;
            }
            changed = changed || best != r.labels[i];
            r.labels[i] = best;
            r.inertia += best_d;
        }
        if (!changed) {
            r.converged = true;
            break;
        }
        std::fill(count.begin(), count.end(), 0);
        std::fill(r.centroids.begin(), r.centroids.end(), 0.0);
        for (std::size_t i = 0; i < n; ++i) {
            ++count[r.labels[i]];
            for (std::size_t j = 0; j < d; ++j) r.centroids(r.labels[i], j) += points(i, j);
        }
        for (std::size_t c = 0; c < k; ++c) {
            if (count[c] == 0) {
                // Re-seed an empty cluster at the point farthest from its own centroid.
                std::size_t far = 0;
                double far_d = -1;
                for (std::size_t i = 0; i < n; ++i) {
                    const double di = dist2(i, &r.centroids(r.labels[i], 0)) / double(std::max<std::size_t>(count[r.labels[i]], 1));
                    if (di > far_d) far = i, far_d = di;
                }
                for (std::size_t j = 0; j < d; ++j) r.centroids(c, j) = points(far, j);
                continue;
            }
            for (std::size_t j = 0; j < d; ++j) r.centroids(c, j) /= double(count[c]);
        }
    }
    r.iterations = std::min(r.iterations, max_iterations);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Softmax probe
// ---------------------------------------------------------------------------------------------

/// Training settings of a softmax probe (full-batch Adam unless batch_size is set).
struct probe_training {
    std::size_t epochs = 300;
    double learning_rate = 0.05;
    double l2 = 1e-3;            ///< weight decay on W, keeps separable problems bounded
    std::size_t batch_size = 0;  ///< 0: full batch
    std::uint64_t seed = 0;      ///< order of the mini-batches
    double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
};

/// A linear classifier p(k | h) = softmax(W z + b), z = (h - mean) / std per feature (the
/// statistics of its training data). Parameters in double. Reading (probabilities) is const and
/// thread-safe; training and refinement are not.
class softmax_probe {
public:
    softmax_probe() = default;
    softmax_probe(std::size_t classes, std::size_t dim)
        : m_classes(classes), m_dim(dim), m_w(classes * dim, 0.0), m_b(classes, 0.0), m_mean(dim, 0.0),
          m_inv_std(dim, 1.0) {
        if (classes < 2 || classes > gact_max_clusters)
            fail(errc::invalid_argument, "softmax_probe: {} classes, expected 2..{}", classes, gact_max_clusters);
        if (dim == 0) fail(errc::invalid_argument, "softmax_probe: dimension is 0");
    }

    std::size_t classes() const noexcept { return m_classes; }
    std::size_t dim() const noexcept { return m_dim; }

    /// Writes p(k | h) for k < classes() into `out`. `h` points at dim() values.
    template <class U>
    void probabilities(const U* h, double* out) const noexcept {
        double top = -std::numeric_limits<double>::infinity();
        for (std::size_t k = 0; k < m_classes; ++k) {
            const double* w = &m_w[k * m_dim];
            double s = m_b[k];
            for (std::size_t j = 0; j < m_dim; ++j) s += w[j] * ((double(h[j]) - m_mean[j]) * m_inv_std[j]);
            out[k] = s;
            top = std::max(top, s);
        }
        double total = 0;
        for (std::size_t k = 0; k < m_classes; ++k) total += out[k] = std::exp(out[k] - top);
        for (std::size_t k = 0; k < m_classes; ++k) out[k] /= total;
    }

    /// The most probable class of `h`.
    template <class U>
    std::size_t predict(const U* h) const noexcept {
        std::array<double, gact_max_clusters> p{};
        probabilities(h, p.data());
        return static_cast<std::size_t>(std::max_element(p.begin(), p.begin() + std::ptrdiff_t(m_classes)) - p.begin());
    }

    /// Fraction of rows of x [N, dim] whose prediction equals the label.
    double accuracy(tensor_view<const double> x, const std::vector<std::size_t>& labels) const {
        check_data(x, labels, "softmax_probe::accuracy");
        std::size_t right = 0;
        for (std::size_t i = 0; i < x.extent(0); ++i) right += predict(&x(i, 0)) == labels[i];
        return double(right) / double(x.extent(0));
    }

    /// Mean cross-entropy of the labels.
    double loss(tensor_view<const double> x, const std::vector<std::size_t>& labels) const {
        check_data(x, labels, "softmax_probe::loss");
        std::array<double, gact_max_clusters> p{};
        double total = 0;
        for (std::size_t i = 0; i < x.extent(0); ++i) {
            probabilities(&x(i, 0), p.data());
            total -= std::log(std::max(p[labels[i]], 1e-300));
        }
        return total / double(x.extent(0));
    }

    /// Fits the standardisation to x, then trains W and b from zero with Adam on the cross-entropy
    /// (+ l2/2 |W|^2). Returns the final training loss. Deterministic for a seed.
    double train(tensor_view<const double> x, const std::vector<std::size_t>& labels, const probe_training& opt = {}) {
        check_data(x, labels, "softmax_probe::train");
        if (!(opt.learning_rate > 0) || opt.epochs == 0)
            fail(errc::invalid_argument, "softmax_probe::train: learning_rate {} and epochs {} must be positive",
                 opt.learning_rate, opt.epochs);
        const std::size_t n = x.extent(0);
        std::fill(m_mean.begin(), m_mean.end(), 0.0);
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < m_dim; ++j) m_mean[j] += x(i, j) / double(n);
        for (std::size_t j = 0; j < m_dim; ++j) {
            double var = 0;
            for (std::size_t i = 0; i < n; ++i) var += (x(i, j) - m_mean[j]) * (x(i, j) - m_mean[j]) / double(n);
            m_inv_std[j] = var > 1e-24 ? 1.0 / std::sqrt(var) : 1.0;
        }
        std::fill(m_w.begin(), m_w.end(), 0.0);
        std::fill(m_b.begin(), m_b.end(), 0.0);
        m_adam_m.assign(m_w.size() + m_b.size(), 0.0);
        m_adam_v.assign(m_w.size() + m_b.size(), 0.0);
        m_adam_t = 0;
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        const std::size_t batch = opt.batch_size == 0 ? n : std::min(opt.batch_size, n);
        rng gen(opt.seed);
        std::vector<double> grad(m_w.size() + m_b.size());
        for (std::size_t epoch = 0; epoch < opt.epochs; ++epoch) {
            if (batch < n)
                for (std::size_t i = n - 1; i > 0; --i)
                    std::swap(order[i], order[static_cast<std::size_t>(gen.uniform() * double(i + 1))]);
            for (std::size_t start = 0; start < n; start += batch) {
                const std::size_t end = std::min(n, start + batch);
                std::fill(grad.begin(), grad.end(), 0.0);
                for (std::size_t r = start; r < end; ++r)
                    accumulate_gradient(&x(order[r], 0), labels[order[r]], 1.0 / double(end - start), grad);
                for (std::size_t q = 0; q < m_w.size(); ++q) grad[q] += opt.l2 * m_w[q];
                adam_step(grad, opt);
            }
        }
        return loss(x, labels);
    }

    /// One plain gradient step on the cross-entropy of (h, label): online refinement (G-ACT step 4).
    /// Keeps the standardisation.
    template <class U>
    void refine(const U* h, std::size_t label, double learning_rate) {
        if (label >= m_classes)
            fail(errc::out_of_range, "softmax_probe::refine: label {} is not below {} classes", label, m_classes);
        if (!(learning_rate > 0)) fail(errc::invalid_argument, "softmax_probe::refine: learning_rate {}", learning_rate);
        std::array<double, gact_max_clusters> p{};
        probabilities(h, p.data());
        for (std::size_t k = 0; k < m_classes; ++k) {
            const double g = p[k] - (k == label ? 1.0 : 0.0);
            for (std::size_t j = 0; j < m_dim; ++j)
                m_w[k * m_dim + j] -= learning_rate * g * ((double(h[j]) - m_mean[j]) * m_inv_std[j]);
            m_b[k] -= learning_rate * g;
        }
    }

private:
    void check_data(const tensor_view<const double>& x, const std::vector<std::size_t>& labels, const char* who) const {
        if (x.rank() != 2 || x.extent(1) != m_dim || x.extent(0) == 0)
            fail(errc::shape_mismatch, "{}: x has shape {}, expected [N > 0, {}]", who, x.shape().to_string(), m_dim);
        if (labels.size() != x.extent(0))
            fail(errc::shape_mismatch, "{}: {} labels for {} rows", who, labels.size(), x.extent(0));
        for (std::size_t i = 0; i < labels.size(); ++i)
            if (labels[i] >= m_classes)
                fail(errc::out_of_range, "{}: labels[{}] = {} is not below {} classes", who, i, labels[i], m_classes);
    }

    void accumulate_gradient(const double* h, std::size_t label, double weight, std::vector<double>& grad) const {
        std::array<double, gact_max_clusters> p{};
        probabilities(h, p.data());
        for (std::size_t k = 0; k < m_classes; ++k) {
            const double g = weight * (p[k] - (k == label ? 1.0 : 0.0));
            for (std::size_t j = 0; j < m_dim; ++j) grad[k * m_dim + j] += g * ((h[j] - m_mean[j]) * m_inv_std[j]);
            grad[m_w.size() + k] += g;
        }
    }

    void adam_step(const std::vector<double>& grad, const probe_training& o) {
        ++m_adam_t;
        const double c1 = 1.0 - std::pow(o.beta1, double(m_adam_t)), c2 = 1.0 - std::pow(o.beta2, double(m_adam_t));
        for (std::size_t q = 0; q < grad.size(); ++q) {
            m_adam_m[q] = o.beta1 * m_adam_m[q] + (1 - o.beta1) * grad[q];
            m_adam_v[q] = o.beta2 * m_adam_v[q] + (1 - o.beta2) * grad[q] * grad[q];
            const double step = o.learning_rate * (m_adam_m[q] / c1) / (std::sqrt(m_adam_v[q] / c2) + o.epsilon);
            if (q < m_w.size()) m_w[q] -= step;
            else m_b[q - m_w.size()] -= step;
        }
    }

    std::size_t m_classes = 0, m_dim = 0;
    std::vector<double> m_w, m_b, m_mean, m_inv_std;
    std::vector<double> m_adam_m, m_adam_v;
    std::size_t m_adam_t = 0;
};

// ---------------------------------------------------------------------------------------------
// G-ACT
// ---------------------------------------------------------------------------------------------

/// Options of gact_fit.
struct gact_options {
    site at = site::resid_post;                          ///< the residual point read and steered
    position_policy policy = position_policy::mean_over_tokens;
    std::size_t clusters = 4;                            ///< K (2..gact_max_clusters)
    std::uint64_t seed = 0;                              ///< k-means++ and probe mini-batches
    probe_training probe;
};

/// One steered layer: K unit directions and the probe that weighs them.
template <class T>
struct gact_layer {
    hook_point point;
    tensor<T> directions;             ///< [K, d], unit rows (normalised centroids of the unit differences)
    softmax_probe probe;
    std::vector<std::size_t> labels;  ///< cluster of each training pair
    double train_accuracy = 0.0;      ///< probe accuracy on the training activations
    double kmeans_inertia = 0.0;
};

/// A fitted G-ACT steerer: one gact_layer per requested layer.
template <class T>
struct gact_steerer {
    std::vector<gact_layer<T>> layers;

    /// The entry of a layer; throws actlens::error (bad_layer_range) if it was not fitted.
    const gact_layer<T>& at_layer(int layer) const {
        for (const auto& l : layers)
            if (l.point.layer == layer) return l;
        fail(errc::bad_layer_range, "gact_steerer: layer {} was not fitted", layer);
    }
    gact_layer<T>& at_layer(int layer) {
        return const_cast<gact_layer<T>&>(static_cast<const gact_steerer&>(*this).at_layer(layer));
    }
};

namespace detail {
// Unit-normalised rows (a zero row stays zero).
inline tensor<double> unit_rows(const tensor<double>& x) {
    tensor<double> out = x;
    for (std::size_t i = 0; i < x.extent(0); ++i) {
        double* row = &out(i, 0);
        const double n = std::sqrt(dot(row, row, x.extent(1)));
        if (n > 0)
            for (std::size_t j = 0; j < x.extent(1); ++j) row[j] /= n;
    }
    return out;
}

// Stacks a and b ([N, d] each) into [2N, d] and the labels twice.
inline tensor<double> stack_rows(const tensor<double>& a, const tensor<double>& b) {
    tensor<double> out({a.extent(0) + b.extent(0), a.extent(1)});
    std::copy(a.begin(), a.end(), out.begin());
    std::copy(b.begin(), b.end(), out.begin() + std::ptrdiff_t(a.size()));
    return out;
}

template <class T>
std::vector<hook_point> gact_points(const basic_transformer<T>& model, const std::vector<int>& layers, site at,
                                    const char* who) {
    if (layers.empty()) fail(errc::invalid_argument, "{}: `layers` is empty", who);
    if (!is_block_site(at) || !is_residual_site(at))
        fail(errc::invalid_argument, "{}: site '{}' is not a residual point inside a block", who,
             hook_point{at, 0}.name());
    std::vector<hook_point> points;
    for (int l : layers) {
        const hook_point p{at, l};
        check_residual_point(p, model.config(), who);
        points.push_back(p);
    }
    return points;
}
} // namespace detail

/// Fits G-ACT at `layers` from paired prompts (positive: the behaviour to steer toward). Throws
/// actlens::error for unequal or too small prompt sets (fewer pairs than clusters), a bad K, or bad layers.
template <class T>
gact_steerer<T> gact_fit(const basic_transformer<T>& model, const std::vector<std::vector<std::int32_t>>& positive,
                         const std::vector<std::vector<std::int32_t>>& negative, const std::vector<int>& layers,
                         const gact_options& options = {}) {
    detail::check_prompt_sets(positive.size(), negative.size(), true, "gact_fit");
    if (options.clusters < 2 || options.clusters > gact_max_clusters)
        fail(errc::invalid_argument, "gact_fit: clusters = {} must be in 2..{}", options.clusters, gact_max_clusters);
    if (positive.size() < options.clusters)
        fail(errc::invalid_argument, "gact_fit: {} pairs cannot fill {} clusters", positive.size(), options.clusters);
    const std::vector<hook_point> points = detail::gact_points(model, layers, options.at, "gact_fit");
    const auto pos = collect_activations(model, positive, points, options.policy);
    const auto neg = collect_activations(model, negative, points, options.policy);
    const std::size_t n = positive.size(), d = model.config().d_model, k = options.clusters;
    gact_steerer<T> out;
    for (std::size_t li = 0; li < points.size(); ++li) {
        tensor<double> diff({n, d});
        for (std::size_t i = 0; i < diff.size(); ++i) diff.data()[i] = pos[li].data()[i] - neg[li].data()[i];
        const kmeans_result km = kmeans(detail::unit_rows(diff).view(), k, options.seed);
        gact_layer<T> layer;
        layer.point = points[li];
        layer.labels = km.labels;
        layer.kmeans_inertia = km.inertia;
        layer.directions.resize({k, d});
        for (std::size_t c = 0; c < k; ++c) {
            const double norm = std::sqrt(detail::dot(&km.centroids(c, 0), &km.centroids(c, 0), d));
            for (std::size_t j = 0; j < d; ++j)
                layer.directions(c, j) = T(norm > 0 ? km.centroids(c, j) / norm : 0.0);
        }
        const tensor<double> x = detail::stack_rows(pos[li], neg[li]);
        std::vector<std::size_t> labels = km.labels;
        labels.insert(labels.end(), km.labels.begin(), km.labels.end());
        layer.probe = softmax_probe(k, d);
        layer.probe.train(x.view(), labels, options.probe);
        layer.train_accuracy = layer.probe.accuracy(x.view(), labels);
        out.layers.push_back(std::move(layer));
    }
    return out;
}

/// Probe accuracy per fitted layer on held-out pairs: the true label of pair i is the direction
/// closest in cosine to its difference d_i; the probe reads h(x_i+) and h(x_i-). Returns one value
/// per entry of steerer.layers.
template <class T>
std::vector<double> gact_accuracy(const basic_transformer<T>& model, const gact_steerer<T>& steerer,
                                  const std::vector<std::vector<std::int32_t>>& positive,
                                  const std::vector<std::vector<std::int32_t>>& negative,
                                  position_policy policy = position_policy::mean_over_tokens) {
    detail::check_prompt_sets(positive.size(), negative.size(), true, "gact_accuracy");
    if (steerer.layers.empty()) fail(errc::invalid_argument, "gact_accuracy: the steerer has no layers");
    std::vector<hook_point> points;
    for (const auto& l : steerer.layers) points.push_back(l.point);
    const auto pos = collect_activations(model, positive, points, policy);
    const auto neg = collect_activations(model, negative, points, policy);
    const std::size_t n = positive.size(), d = model.config().d_model;
    std::vector<double> out;
    for (std::size_t li = 0; li < points.size(); ++li) {
        const gact_layer<T>& layer = steerer.layers[li];
        std::vector<std::size_t> labels(n);
        std::vector<double> diff(d);
        for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t j = 0; j < d; ++j) diff[j] = pos[li](i, j) - neg[li](i, j);
            double best = -std::numeric_limits<double>::infinity();
            for (std::size_t c = 0; c < layer.directions.extent(0); ++c) {
                double s = 0;
                for (std::size_t j = 0; j < d; ++j) s += diff[j] * double(layer.directions(c, j));
                if (s > best) best = s, labels[i] = c;
            }
        }
        const tensor<double> x = detail::stack_rows(pos[li], neg[li]);
        std::vector<std::size_t> both = labels;
        both.insert(both.end(), labels.begin(), labels.end());
        out.push_back(layer.probe.accuracy(x.view(), both));
    }
    return out;
}

/// Options of the G-ACT hook.
struct gact_apply_options {
    double alpha = 1.0;
    std::vector<int> layers; ///< subset of the fitted layers to steer; empty: all of them
    token_range tokens;
    bool argmax = false;     ///< inject only the most probable direction instead of the mixture
};

/// Adds hooks that inject alpha * sum_k p(k | h) v_k at every position of `options.tokens` of the
/// selected layers (h is the activation before the injection). The hook holds a copy of the probes
/// (later refinement of `steerer` does not reach it) and allocates nothing per call.
template <class T>
void add_gact_steering(hook_set<T>& hooks, const gact_steerer<T>& steerer, const gact_apply_options& options = {}) {
    if (!std::isfinite(options.alpha)) fail(errc::non_finite, "add_gact_steering: alpha is {}", options.alpha);
    if (steerer.layers.empty()) fail(errc::invalid_argument, "add_gact_steering: the steerer has no layers");
    std::vector<const gact_layer<T>*> chosen;
    if (options.layers.empty())
        for (const auto& l : steerer.layers) chosen.push_back(&l);
    else
        for (int l : options.layers) chosen.push_back(&steerer.at_layer(l));
    for (const gact_layer<T>* layer : chosen) {
        auto state = std::make_shared<const gact_layer<T>>(*layer);
        const double alpha = options.alpha;
        const token_range tokens = options.tokens;
        const bool argmax = options.argmax;
        hooks.add(layer->point, [state, alpha, tokens, argmax](tensor_view<T> a, const hook_context& ctx) {
            const gact_layer<T>& s = *state;
            const std::size_t k = s.directions.extent(0), d = s.directions.extent(1);
            detail::check_activation(a, d, ctx, "add_gact_steering");
            std::array<double, gact_max_clusters> p{};
            for (std::size_t b = 0; b < ctx.batch; ++b)
                for (std::size_t t = 0; t < ctx.positions; ++t) {
                    if (!tokens.contains(ctx.position_offset + t)) continue;
                    T* x = &a(b, t, 0);
                    s.probe.probabilities(x, p.data());
                    if (argmax) {
                        const auto top = std::size_t(std::max_element(p.begin(), p.begin() + std::ptrdiff_t(k)) - p.begin());
                        std::fill(p.begin(), p.end(), 0.0);
                        p[top] = 1.0;
                    }
                    for (std::size_t c = 0; c < k; ++c) {
                        const T w = T(alpha * p[c]);
                        const T* v = &s.directions(c, 0);
                        for (std::size_t j = 0; j < d; ++j) x[j] += w * v[j];
                    }
                }
        });
    }
}

/// Options of gact_refine.
struct gact_refine_options {
    double alpha = 4.0;          ///< injection strength used to find the best cluster
    double learning_rate = 0.05; ///< probe step size
    std::size_t steps = 1;       ///< gradient steps per prompt and layer
};

/// What gact_refine did per layer.
struct gact_refine_report {
    std::vector<std::size_t> relabelled; ///< prompts whose best cluster differs from the probe's pick before
    std::vector<double> mean_gain;       ///< mean over prompts of the best cluster's target log-prob gain
};

/// Online refinement (G-ACT step 4): for each prompt and layer, injects each direction alone (alpha
/// at every position of that layer), finds the one that most raises log sum_{t in targets} p(t) at
/// the last position, and takes `steps` gradient steps of the layer's probe toward it on the
/// prompt's activation (read with `policy`). Costs prompts x layers x (K + 1) forwards.
template <class T>
gact_refine_report gact_refine(const basic_transformer<T>& model, gact_steerer<T>& steerer,
                               const std::vector<std::vector<std::int32_t>>& prompts,
                               const std::vector<std::int32_t>& targets, const gact_refine_options& options = {},
                               position_policy policy = position_policy::mean_over_tokens) {
    if (prompts.empty()) fail(errc::invalid_argument, "gact_refine: `prompts` is empty");
    if (targets.empty()) fail(errc::invalid_argument, "gact_refine: `targets` is empty");
    const std::size_t vocab = model.config().vocab_size, d = model.config().d_model;
    for (std::int32_t t : targets)
        if (t < 0 || std::size_t(t) >= vocab)
            fail(errc::token_out_of_range, "gact_refine: target token {} is outside [0, {})", t, vocab);
    std::vector<hook_point> points;
    for (const auto& l : steerer.layers) points.push_back(l.point);
    const auto feats = collect_activations(model, prompts, points, policy);
    auto target_logprob = [&](const tensor_view<const T>& logits) {
        double top = -std::numeric_limits<double>::infinity();
        for (std::size_t v = 0; v < vocab; ++v) top = std::max(top, double(logits(0, 0, v)));
        double all = 0, want = 0;
        for (std::size_t v = 0; v < vocab; ++v) all += std::exp(double(logits(0, 0, v)) - top);
        for (std::int32_t t : targets) want += std::exp(double(logits(0, 0, std::size_t(t))) - top);
        return std::log(want / all);
    };
    gact_refine_report report;
    workspace<T> ws;
    run_options<T> run;
    run.last_position_only = true;
    std::vector<T> injection(d);
    for (std::size_t li = 0; li < steerer.layers.size(); ++li) {
        gact_layer<T>& layer = steerer.layers[li];
        std::size_t relabelled = 0;
        double gain = 0;
        // One hook whose direction is switched between forwards (the buffer is reused).
        hook_set<T> hooks;
        hooks.add(layer.point, [&injection, d](tensor_view<T> a, const hook_context& ctx) {
            for (std::size_t b = 0; b < ctx.batch; ++b)
                for (std::size_t t = 0; t < ctx.positions; ++t)
                    for (std::size_t j = 0; j < d; ++j) a(b, t, j) += injection[j];
        });
        run.hooks = &hooks;
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            const tensor_view<const std::int32_t> tokens(prompts[i].data(), {prompts[i].size()});
            std::fill(injection.begin(), injection.end(), T(0));
            const double base = target_logprob(model.forward_into(ws, tokens, run));
            std::size_t best = 0;
            double best_lp = -std::numeric_limits<double>::infinity();
            for (std::size_t c = 0; c < layer.directions.extent(0); ++c) {
                for (std::size_t j = 0; j < d; ++j) injection[j] = T(options.alpha) * layer.directions(c, j);
                const double lp = target_logprob(model.forward_into(ws, tokens, run));
                if (lp > best_lp) best_lp = lp, best = c;
            }
            const double* h = &feats[li](i, 0);
            relabelled += layer.probe.predict(h) != best;
            gain += best_lp - base;
            for (std::size_t s = 0; s < options.steps; ++s) layer.probe.refine(h, best, options.learning_rate);
        }
        report.relabelled.push_back(relabelled);
        report.mean_gain.push_back(gain / double(prompts.size()));
    }
    return report;
}

} // namespace actlens
