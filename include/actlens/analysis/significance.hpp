// actlens/analysis/significance.hpp: is a component's score a finding, or what a null model gives too?
//
// "The Dead Salmons of AI Interpretability" (seed papers) shows attribution, probing and even causal
// analyses giving plausible explanations for random networks. The remedy is to treat an explanation
// as an estimate and test it: run the same method on null models (analysis/null_models.hpp) and
// compare, component by component:
//
//   p_c = (1 + #{k : |null_k,c| >= |observed_c|}) / (1 + K)      permutation p-value (two-sided by
//                                                                magnitude; one-sided on request),
//                                                                never 0 (Phipson & Smyth 2010)
//   z_c = (observed_c − mean_k null_k,c) / sd_k null_k,c          effect size against the null
//   q_c = min_{j >= rank(p_c)} p_(j) · m / j                      Benjamini–Hochberg adjusted p-values
//
// and a component is a discovery at FDR level α when q_c <= α (Benjamini & Hochberg 1995, step-up).
// A permutation p-value cannot go below 1/(K + 1), so with K = 19 nulls and 40 components BH can
// declare nothing at α = 0.1 however large the effects: the test then reports, beside it, the
// Gaussian tail of z_c (two-sided for `magnitude`), an approximation that assumes the null scores
// are normal, with its own BH q-values. Prefer the permutation values when K allows it.
// Intervals over prompts come from a percentile bootstrap of the per-prompt scores.
#pragma once

#include <actlens/core/rng.hpp>
#include <actlens/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace actlens {

/// The quantile at `level` of `values` (reordered in place): the order statistic at floor(level (n − 1)),
/// no interpolation. The percentile bootstraps here and in analysis/sobol.hpp use it.
inline double quantile_in_place(std::vector<double>& values, double level) {
    if (values.empty()) fail(errc::invalid_argument, "quantile_in_place: no values");
    const auto at = static_cast<std::size_t>(std::floor(level * double(values.size() - 1)));
    std::nth_element(values.begin(), values.begin() + std::ptrdiff_t(at), values.end());
    return values[at];
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the input's order. Throws arg.101 for a
/// p-value outside [0, 1] or NaN (named by index).
inline std::vector<double> benjamini_hochberg(const std::vector<double>& p) {
    const std::size_t m = p.size();
    for (std::size_t i = 0; i < m; ++i)
        if (!(p[i] >= 0.0 && p[i] <= 1.0))
            fail(errc::invalid_argument, "benjamini_hochberg: p[{}] = {} is not a probability", i, p[i]);
    std::vector<std::size_t> order(m);
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
    std::vector<double> q(m);
    double running = 1.0; // the step-up minimum, from the largest p-value down
    for (std::size_t r = m; r-- > 0;) {
        running = std::min(running, p[order[r]] * double(m) / double(r + 1));
        q[order[r]] = running;
    }
    return q;
}

/// Indices whose q-value is at most `alpha`, in increasing order.
inline std::vector<std::size_t> fdr_discoveries(const std::vector<double>& q, double alpha) {
    if (!(alpha > 0.0 && alpha < 1.0)) fail(errc::invalid_argument, "fdr_discoveries: alpha = {} is not in (0, 1)", alpha);
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < q.size(); ++i)
        if (q[i] <= alpha) out.push_back(i);
    return out;
}

/// Per-component comparison of observed scores with the scores of K null runs.
struct null_test_result {
    std::vector<double> observed;  ///< [C]
    std::vector<double> null_mean; ///< [C]
    std::vector<double> null_sd;   ///< [C] (sample standard deviation; 0 when K < 2)
    std::vector<double> effect;    ///< [C] z-score against the null; ±inf when the null is constant
    std::vector<double> p_value;   ///< [C] permutation p-value, in [1/(K+1), 1]
    std::vector<double> q_value;   ///< [C] Benjamini–Hochberg across the C components
    std::vector<double> p_gaussian; ///< [C] the normal tail of the effect (approximation; see the top)
    std::vector<double> q_gaussian; ///< [C] Benjamini–Hochberg of p_gaussian
    std::size_t null_runs = 0;     ///< K
};

enum class null_alternative {
    magnitude, ///< |null| >= |observed| counts against the component (two-sided by size)
    greater,   ///< null >= observed counts against it (the component scores high)
    less       ///< null <= observed counts against it
};

/// Tests `observed` [C] against `nulls` [K][C]. Throws arg.102 for a null run of another length,
/// arg.101 for no null run, arg.104 for a NaN or infinite score (named).
inline null_test_result null_test(const std::vector<double>& observed, const std::vector<std::vector<double>>& nulls,
                                  null_alternative alternative = null_alternative::magnitude) {
    const std::size_t C = observed.size(), K = nulls.size();
    if (K == 0) fail(errc::invalid_argument, "null_test: no null run given");
    for (std::size_t c = 0; c < C; ++c)
        if (!std::isfinite(observed[c])) fail(errc::non_finite, "null_test: observed[{}] = {}", c, observed[c]);
    for (std::size_t k = 0; k < K; ++k) {
        if (nulls[k].size() != C)
            fail(errc::shape_mismatch, "null_test: null run {} has {} scores, the observed run {}", k, nulls[k].size(), C);
        for (std::size_t c = 0; c < C; ++c)
            if (!std::isfinite(nulls[k][c])) fail(errc::non_finite, "null_test: null run {} score {} = {}", k, c, nulls[k][c]);
    }
    null_test_result r;
    r.observed = observed;
    r.null_runs = K;
    r.null_mean.assign(C, 0.0);
    r.null_sd.assign(C, 0.0);
    r.effect.assign(C, 0.0);
    r.p_value.assign(C, 0.0);
    for (std::size_t c = 0; c < C; ++c) {
        double sum = 0.0;
        std::size_t against = 0;
        for (std::size_t k = 0; k < K; ++k) {
            const double v = nulls[k][c], o = observed[c];
            sum += v;
            switch (alternative) {
            case null_alternative::magnitude: against += std::fabs(v) >= std::fabs(o); break;
            case null_alternative::greater: against += v >= o; break;
            case null_alternative::less: against += v <= o; break;
            }
        }
        const double mean = sum / double(K);
        double ss = 0.0;
        for (std::size_t k = 0; k < K; ++k) ss += (nulls[k][c] - mean) * (nulls[k][c] - mean);
        const double sd = K > 1 ? std::sqrt(ss / double(K - 1)) : 0.0;
        r.null_mean[c] = mean;
        r.null_sd[c] = sd;
        const double diff = observed[c] - mean;
        r.effect[c] = sd > 0.0 ? diff / sd
                               : (diff == 0.0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), diff));
        r.p_value[c] = double(1 + against) / double(1 + K);
        const double z = r.effect[c];
        switch (alternative) {
        case null_alternative::magnitude: r.p_gaussian.push_back(std::erfc(std::fabs(z) / std::sqrt(2.0))); break;
        case null_alternative::greater: r.p_gaussian.push_back(0.5 * std::erfc(z / std::sqrt(2.0))); break;
        case null_alternative::less: r.p_gaussian.push_back(0.5 * std::erfc(-z / std::sqrt(2.0))); break;
        }
    }
    r.q_value = benjamini_hochberg(r.p_value);
    r.q_gaussian = benjamini_hochberg(r.p_gaussian);
    return r;
}

/// A percentile bootstrap interval per component of the mean over prompts.
struct mean_interval {
    std::vector<double> mean, low, high; ///< [C]
    double confidence = 0.95;
    std::size_t resamples = 0;
};

/// `scores` [P][C]: one row of C component scores per prompt. Resamples the prompts with
/// replacement `resamples` times (seeded) and returns the mean and the (1 ± confidence)/2 quantiles of
/// the resampled means. Throws arg.101 for fewer than two prompts, a bad confidence or resample count,
/// arg.102 for ragged rows, arg.104 for a NaN or infinite score.
inline mean_interval bootstrap_mean_interval(const std::vector<std::vector<double>>& scores,
                                             std::size_t resamples = 2000, double confidence = 0.95,
                                             std::uint64_t seed = 0) {
    const std::size_t P = scores.size();
    if (P < 2) fail(errc::invalid_argument, "bootstrap_mean_interval: {} prompts; at least 2 are needed", P);
    if (resamples < 2) fail(errc::invalid_argument, "bootstrap_mean_interval: resamples = {} (at least 2)", resamples);
    if (!(confidence > 0.0 && confidence < 1.0))
        fail(errc::invalid_argument, "bootstrap_mean_interval: confidence = {} is not in (0, 1)", confidence);
    const std::size_t C = scores.front().size();
    for (std::size_t p = 0; p < P; ++p) {
        if (scores[p].size() != C)
            fail(errc::shape_mismatch, "bootstrap_mean_interval: prompt {} has {} scores, prompt 0 has {}", p,
                 scores[p].size(), C);
        for (std::size_t c = 0; c < C; ++c)
            if (!std::isfinite(scores[p][c]))
                fail(errc::non_finite, "bootstrap_mean_interval: score [{}][{}] = {}", p, c, scores[p][c]);
    }
    mean_interval out;
    out.confidence = confidence;
    out.resamples = resamples;
    out.mean.assign(C, 0.0);
    for (const auto& row : scores)
        for (std::size_t c = 0; c < C; ++c) out.mean[c] += row[c] / double(P);
    std::vector<std::vector<double>> means(C, std::vector<double>(resamples, 0.0));
    rng gen(seed);
    std::vector<std::size_t> pick(P);
    for (std::size_t b = 0; b < resamples; ++b) {
        for (std::size_t& i : pick) i = std::min(P - 1, static_cast<std::size_t>(gen.uniform() * double(P)));
        for (std::size_t c = 0; c < C; ++c) {
            double s = 0.0;
            for (std::size_t i : pick) s += scores[i][c];
            means[c][b] = s / double(P);
        }
    }
    out.low.resize(C);
    out.high.resize(C);
    for (std::size_t c = 0; c < C; ++c) {
        out.low[c] = quantile_in_place(means[c], (1.0 - confidence) / 2.0);
        out.high[c] = quantile_in_place(means[c], (1.0 + confidence) / 2.0);
    }
    return out;
}

} // namespace actlens
