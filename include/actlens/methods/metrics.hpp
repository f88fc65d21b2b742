// actlens/methods/metrics.hpp: scalar metrics of a model's logits, with their gradients.
//
// A metric reads logits [B, T, V] and returns one number, the mean over the batch of a per-row
// quantity at one position per row. Besides value(), every metric gives its gradient at
// ln_final.hook_normalized, which is where the backward pass starts: for a logit difference that
// is the difference of two unembedding rows, with no product over the vocabulary at all.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace actlens {

namespace detail {
inline void check_metric_rows(std::size_t rows, std::size_t batch, const char* what) {
    if (rows != batch) fail(errc::shape_mismatch, "metric: {} has {} entries for a batch of {}", what, rows, batch);
}

template <class T>
void check_metric_logits(const tensor_view<const T>& logits) {
    if (logits.rank() != 3 || logits.extent(0) == 0 || logits.extent(1) == 0 || !logits.is_contiguous())
        fail(errc::shape_mismatch, "metric: logits have shape {}, expected contiguous [B, T, V]",
             logits.shape().to_string());
}

// Log-softmax of one row, in double.
template <class T>
void log_softmax_row(const T* logits, std::size_t vocab, std::vector<double>& out) {
    out.resize(vocab);
    double max = double(logits[0]);
    for (std::size_t v = 1; v < vocab; ++v) max = std::max(max, double(logits[v]));
    double total = 0;
    for (std::size_t v = 0; v < vocab; ++v) total += std::exp(double(logits[v]) - max);
    const double log_total = max + std::log(total);
    for (std::size_t v = 0; v < vocab; ++v) out[v] = double(logits[v]) - log_total;
}
} // namespace detail

// Lets a metric take logits as a tensor or a mutable view as well as a const view. (A macro rather
// than a base class keeps the metrics aggregates: logit_difference{{correct}, {wrong}}.)
#define ACTLENS_METRIC_VALUE_OVERLOADS                                                              \
    template <class T>                                                                              \
    double value(const tensor<T>& logits) const {                                                   \
        return value(logits.view());                                                                \
    }                                                                                               \
    template <class T, class = std::enable_if_t<!std::is_const_v<T>>>                               \
    double value(tensor_view<T> logits) const {                                                     \
        return value(tensor_view<const T>(logits));                                                 \
    }

/// Mean over rows of logit[b, pos, correct_b] - logit[b, pos, wrong_b] (pos = last position by default).
struct logit_difference {
    ACTLENS_METRIC_VALUE_OVERLOADS

    std::vector<std::int32_t> correct, wrong;
    int position = -1; ///< -1: the last position

    template <class T>
    double value(tensor_view<const T> logits) const {
        detail::check_metric_logits(logits);
        const std::size_t B = logits.extent(0), t = row_position(logits.extent(1));
        check(B, logits.extent(2));
        double sum = 0;
        for (std::size_t b = 0; b < B; ++b)
            sum += double(logits(b, t, std::size_t(correct[b]))) - double(logits(b, t, std::size_t(wrong[b])));
        return sum / double(B);
    }

    /// dM/dlogits [B, T, V].
    template <class T>
    void logits_gradient(tensor_view<const T> logits, tensor_view<T> d_logits) const {
        detail::check_metric_logits(logits);
        const std::size_t B = logits.extent(0), t = row_position(logits.extent(1));
        check(B, logits.extent(2));
        std::fill(d_logits.data(), d_logits.data() + d_logits.size(), T(0));
        for (std::size_t b = 0; b < B; ++b) {
            d_logits(b, t, std::size_t(correct[b])) += T(1) / T(B);
            d_logits(b, t, std::size_t(wrong[b])) -= T(1) / T(B);
        }
    }

    /// dM/d(ln_final.hook_normalized) [B, T, d]: (W_U[correct] - W_U[wrong]) / B at the read position.
    template <class T>
    tensor<T> normalized_gradient(const basic_transformer<T>& model, std::size_t batch, std::size_t positions) const {
        const model_config& c = model.config();
        check(batch, c.vocab_size);
        const std::size_t t = row_position(positions);
        tensor<T> out({batch, positions, c.d_model});
        const auto& U = model.weights().unembedding;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < c.d_model; ++i)
                out(b, t, i) = (U(std::size_t(correct[b]), i) - U(std::size_t(wrong[b]), i)) / T(batch);
        return out;
    }

    /// The vocabulary ids whose logits value() reads (sorted, unique): a patching sweep then
    /// computes only these columns of the unembedding (see activation_patch).
    std::vector<std::int32_t> logit_tokens() const {
        std::vector<std::int32_t> ids(correct);
        ids.insert(ids.end(), wrong.begin(), wrong.end());
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        return ids;
    }

    std::size_t row_position(std::size_t positions) const { return position_in(position, positions); }

    /// The row a metric reading `position` (negative: from the end) reads in a sequence.
    static std::size_t position_in(int position, std::size_t positions) {
        if (position >= static_cast<int>(positions) || position < -static_cast<int>(positions))
            fail(errc::out_of_range, "metric: position {} is outside a sequence of {}", position, positions);
        return position < 0 ? positions + std::size_t(position) : std::size_t(position);
    }

private:
    void check(std::size_t batch, std::size_t vocab) const {
        detail::check_metric_rows(correct.size(), batch, "correct tokens");
        detail::check_metric_rows(wrong.size(), batch, "wrong tokens");
        for (std::size_t b = 0; b < batch; ++b)
            for (std::int32_t id : {correct[b], wrong[b]})
                if (id < 0 || std::size_t(id) >= vocab)
                    fail(errc::token_out_of_range, "metric: token {} of row {} is outside the vocabulary [0, {})", id,
                         b, vocab);
    }
};

/// Mean over rows of log p(target_b) (or p(target_b) with `probability = true`) at one position.
struct token_log_prob {
    ACTLENS_METRIC_VALUE_OVERLOADS
    std::vector<std::int32_t> target;
    int position = -1;
    bool probability = false;

    template <class T>
    double value(tensor_view<const T> logits) const {
        detail::check_metric_logits(logits);
        const std::size_t B = logits.extent(0), V = logits.extent(2), t = row_position(logits.extent(1));
        check(B, V);
        double sum = 0;
        std::vector<double> lp;
        for (std::size_t b = 0; b < B; ++b) {
            detail::log_softmax_row(&logits(b, t, 0), V, lp);
            const double x = lp[std::size_t(target[b])];
            sum += probability ? std::exp(x) : x;
        }
        return sum / double(B);
    }

    template <class T>
    void logits_gradient(tensor_view<const T> logits, tensor_view<T> d_logits) const {
        detail::check_metric_logits(logits);
        const std::size_t B = logits.extent(0), V = logits.extent(2), t = row_position(logits.extent(1));
        check(B, V);
        std::fill(d_logits.data(), d_logits.data() + d_logits.size(), T(0));
        std::vector<double> lp;
        for (std::size_t b = 0; b < B; ++b) {
            detail::log_softmax_row(&logits(b, t, 0), V, lp);
            // d log p_c / d z_v = [v == c] - p_v; d p_c = p_c (that).
            const double outer = probability ? std::exp(lp[std::size_t(target[b])]) : 1.0;
            for (std::size_t v = 0; v < V; ++v)
                d_logits(b, t, v) = T(outer * ((v == std::size_t(target[b]) ? 1.0 : 0.0) - std::exp(lp[v])) / double(B));
        }
    }

    std::size_t row_position(std::size_t positions) const {
        return logit_difference::position_in(position, positions);
    }

private:
    void check(std::size_t batch, std::size_t vocab) const {
        detail::check_metric_rows(target.size(), batch, "target tokens");
        for (std::size_t b = 0; b < batch; ++b)
            if (target[b] < 0 || std::size_t(target[b]) >= vocab)
                fail(errc::token_out_of_range, "metric: token {} of row {} is outside the vocabulary [0, {})",
                     target[b], b, vocab);
    }
};

/// Mean over rows of KL(reference_b || model_b) of the next-token distribution at one position.
/// `reference_log_probs` is [B, V] (e.g. the clean run's log-softmax).
struct kl_divergence {
    ACTLENS_METRIC_VALUE_OVERLOADS
    tensor<double> reference_log_probs;
    int position = -1;

    template <class T>
    double value(tensor_view<const T> logits) const {
        detail::check_metric_logits(logits);
        const std::size_t B = logits.extent(0), V = logits.extent(2), t = row_position(logits.extent(1));
        check(B, V);
        double sum = 0;
        std::vector<double> lp;
        for (std::size_t b = 0; b < B; ++b) {
            detail::log_softmax_row(&logits(b, t, 0), V, lp);
            for (std::size_t v = 0; v < V; ++v) {
                const double r = reference_log_probs(b, v);
                if (std::isfinite(r)) sum += std::exp(r) * (r - lp[v]);
            }
        }
        return sum / double(B);
    }

    template <class T>
    void logits_gradient(tensor_view<const T> logits, tensor_view<T> d_logits) const {
        detail::check_metric_logits(logits);
        const std::size_t B = logits.extent(0), V = logits.extent(2), t = row_position(logits.extent(1));
        check(B, V);
        std::fill(d_logits.data(), d_logits.data() + d_logits.size(), T(0));
        std::vector<double> lp;
        for (std::size_t b = 0; b < B; ++b) {
            detail::log_softmax_row(&logits(b, t, 0), V, lp);
            // d/dz_v of -sum_u r_u log p_u = p_v - r_v (reference probabilities sum to one).
            for (std::size_t v = 0; v < V; ++v)
                d_logits(b, t, v) = T((std::exp(lp[v]) - std::exp(reference_log_probs(b, v))) / double(B));
        }
    }

    /// The reference distribution of a run's logits at `position` (log-softmax, [B, V]).
    template <class T>
    static kl_divergence to(tensor_view<const T> logits, int position = -1) {
        detail::check_metric_logits(logits);
        kl_divergence k;
        k.position = position;
        const std::size_t B = logits.extent(0), V = logits.extent(2), t = k.row_position(logits.extent(1));
        k.reference_log_probs.resize({B, V});
        std::vector<double> lp;
        for (std::size_t b = 0; b < B; ++b) {
            detail::log_softmax_row(&logits(b, t, 0), V, lp);
            std::copy(lp.begin(), lp.end(), &k.reference_log_probs(b, 0));
        }
        return k;
    }

    std::size_t row_position(std::size_t positions) const {
        return logit_difference::position_in(position, positions);
    }

private:
    void check(std::size_t batch, std::size_t vocab) const {
        if (reference_log_probs.shape() != shape_t{batch, vocab})
            fail(errc::shape_mismatch, "metric: reference distribution has shape {}, expected [{}, {}]",
                 reference_log_probs.shape().to_string(), batch, vocab);
    }
};

/// (M - M_corrupted) / (M_clean - M_corrupted): 1 on the clean run, 0 on the corrupted one.
template <class Metric>
struct normalized_metric {
    ACTLENS_METRIC_VALUE_OVERLOADS
    Metric base;
    double clean = 1.0, corrupted = 0.0;

    template <class T>
    double value(tensor_view<const T> logits) const {
        return (base.value(logits) - corrupted) / denominator();
    }
    template <class T>
    void logits_gradient(tensor_view<const T> logits, tensor_view<T> d_logits) const {
        base.logits_gradient(logits, d_logits);
        for (std::size_t i = 0; i < d_logits.size(); ++i) d_logits.data()[i] /= T(denominator());
    }
    /// The base metric's logit_tokens(), when it has them.
    template <class M = Metric>
    auto logit_tokens() const -> decltype(std::declval<const M&>().logit_tokens()) {
        return base.logit_tokens();
    }
    double denominator() const {
        const double d = clean - corrupted;
        if (!(std::abs(d) > 0) || !std::isfinite(d))
            fail(errc::non_finite, "normalized metric: clean ({}) and corrupted ({}) values must differ", clean,
                 corrupted);
        return d;
    }
};

template <class Metric>
normalized_metric<Metric> normalize(Metric base, double clean, double corrupted) {
    return normalized_metric<Metric>{std::move(base), clean, corrupted};
}

} // namespace actlens

#undef ACTLENS_METRIC_VALUE_OVERLOADS
