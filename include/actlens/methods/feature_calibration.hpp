// actlens/methods/feature_calibration.hpp: how hard to steer with an SNMF feature, and whether it
// detects its concept.
//
// Shafran, Geiger & Geva (arXiv 2506.10920), section "causal steering": a feature's steering
// strength α is not compared across features directly but calibrated so that steering moves the
// next-token distribution after a neutral prompt by a set amount,
//
//   KL(p_base ‖ p_α) = target,   p_α: next-token distribution with α ẑ_j added to hook_post,
//
// found by bisection on α in [1, 2000] (20 steps, tolerance 0.01, as the authors' code does); KL
// grows with α, so bisection brackets it. Concept detection scores a sentence by the largest cosine
// between ẑ_j and the activation at any of its (non-skipped) tokens; a feature detects its concept
// when sentences that express it score above neutral ones. The paper's aggregate formula is not
// published; we report the difference of the two means and the AUROC of separating the two sets
// by the score (the probability that a concept sentence outscores a neutral one).
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_features.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace actlens {

struct alpha_calibration_options {
    double low = 1.0, high = 2000.0; ///< the bracket of α
    std::size_t steps = 20;          ///< bisection steps at most
    double tolerance = 0.01;         ///< stop when |KL − target| <= tolerance · target
    double sign = 1.0;               ///< +1 steers towards the feature, −1 away from it
};

struct alpha_calibration {
    double alpha = 0.0;   ///< signed α
    double kl = 0.0;      ///< KL(p_base ‖ p_α) reached
    std::size_t steps = 0;
    bool converged = false; ///< |KL − target| within tolerance (else the bracket's best end)
};

namespace detail {

/// KL(p ‖ q) of the softmaxes of two logit rows, in double.
template <class T>
double kl_of_logits(const T* p_logits, const T* q_logits, std::size_t V) {
    double pm = -std::numeric_limits<double>::infinity(), qm = pm;
    for (std::size_t v = 0; v < V; ++v) {
        pm = std::max(pm, double(p_logits[v]));
        qm = std::max(qm, double(q_logits[v]));
    }
    double ps = 0.0, qs = 0.0;
    for (std::size_t v = 0; v < V; ++v) {
        ps += std::exp(double(p_logits[v]) - pm);
        qs += std::exp(double(q_logits[v]) - qm);
    }
    const double plog = pm + std::log(ps), qlog = qm + std::log(qs);
    double kl = 0.0;
    for (std::size_t v = 0; v < V; ++v) {
        const double lp = double(p_logits[v]) - plog, lq = double(q_logits[v]) - qlog;
        kl += std::exp(lp) * (lp - lq);
    }
    return std::max(kl, 0.0);
}

} // namespace detail

/// The KL of the next-token distribution after `prompt` when feature j of `fit` (a fit of
/// blocks.`layer`.mlp.hook_post) steers with strength `alpha`.
template <int = 0>
double steering_kl(const transformer& model, int layer, const snmf_result& fit, std::size_t j,
                   const std::vector<std::int32_t>& prompt, double alpha) {
    if (prompt.empty()) fail(errc::empty_prompt, "steering_kl: the prompt is empty");
    const tensor<float> base = model.forward(prompt);
    hook_set<float> hooks;
    add_feature_steering(hooks, model, layer, fit, j, float(alpha));
    run_options<float> run;
    run.hooks = &hooks;
    const tensor<float> steered = model.forward(prompt, run);
    const std::size_t V = model.config().vocab_size, last = prompt.size() - 1;
    return detail::kl_of_logits(&base(0, last, 0), &steered(0, last, 0), V);
}

/// The α (with options.sign) whose steering_kl is `target_kl`, by bisection in [low, high]. Throws
/// arg.101 for a target that is not positive or a bad bracket, and as steering_kl.
template <int = 0>
alpha_calibration calibrate_alpha(const transformer& model, int layer, const snmf_result& fit, std::size_t j,
                                  const std::vector<std::int32_t>& prompt, double target_kl,
                                  const alpha_calibration_options& o = {}) {
    if (!(target_kl > 0.0) || !std::isfinite(target_kl))
        fail(errc::invalid_argument, "calibrate_alpha: target_kl = {} must be positive", target_kl);
    if (!(o.low > 0.0 && o.high > o.low) || !std::isfinite(o.high))
        fail(errc::invalid_argument, "calibrate_alpha: the bracket [{}, {}] must have 0 < low < high", o.low, o.high);
    if (o.sign != 1.0 && o.sign != -1.0) fail(errc::invalid_argument, "calibrate_alpha: sign = {} (+1 or -1)", o.sign);
    double lo = o.low, hi = o.high;
    alpha_calibration best;
    double best_gap = std::numeric_limits<double>::infinity();
    for (std::size_t step = 0; step < o.steps; ++step) {
        const double mid = 0.5 * (lo + hi);
        const double kl = steering_kl(model, layer, fit, j, prompt, o.sign * mid);
        const double gap = std::fabs(kl - target_kl);
        if (gap < best_gap) {
            best_gap = gap;
            best.alpha = o.sign * mid;
            best.kl = kl;
        }
        best.steps = step + 1;
        if (gap <= o.tolerance * target_kl) {
            best.converged = true;
            break;
        }
        (kl < target_kl ? lo : hi) = mid;
    }
    return best;
}

/// Concept detection of feature j: each sentence's score is the largest cos(ẑ_j, a_t) over its
/// tokens not in `skip_tokens` (BOS, padding), a_t = blocks.`layer`.mlp.hook_post.
struct concept_detection {
    std::vector<double> concept_scores, neutral_scores;
    double mean_difference = 0.0; ///< mean over concept sentences − mean over neutral ones
    double auroc = 0.0;           ///< P(a concept sentence outscores a neutral one), ties 1/2
};

template <int = 0>
concept_detection detect_concept(const transformer& model, int layer, const snmf_result& fit, std::size_t j,
                                 const std::vector<std::vector<std::int32_t>>& concept_sentences,
                                 const std::vector<std::vector<std::int32_t>>& neutral_sentences,
                                 const std::vector<std::int32_t>& skip_tokens = {}) {
    detail::check_fit_width(model, layer, fit, "detect_concept");
    detail::check_feature(fit, j, "detect_concept");
    if (concept_sentences.empty() || neutral_sentences.empty())
        fail(errc::invalid_argument, "detect_concept: needs at least one concept and one neutral sentence");
    const std::size_t d = fit.features.extent(1);
    double zn = 0.0;
    for (std::size_t i = 0; i < d; ++i) zn += double(fit.features(j, i)) * double(fit.features(j, i));
    if (!(zn > 0.0)) fail(errc::invalid_argument, "detect_concept: feature {} is the zero vector", j);
    zn = std::sqrt(zn);
    const hook_point point{site::mlp_post, layer};
    run_options<float> run;
    run.stop_at_layer = layer + 1;
    auto score = [&](const std::vector<std::int32_t>& sentence, std::size_t index, const char* set) {
        const auto [_, cache] = model.run_with_cache(sentence, point.name(), run);
        const tensor<float>& a = cache.at(point);
        double best = -std::numeric_limits<double>::infinity();
        for (std::size_t t = 0; t < sentence.size(); ++t) {
            if (std::find(skip_tokens.begin(), skip_tokens.end(), sentence[t]) != skip_tokens.end()) continue;
            double dot = 0.0, an = 0.0;
            for (std::size_t i = 0; i < d; ++i) {
                dot += double(a(0, t, i)) * double(fit.features(j, i));
                an += double(a(0, t, i)) * double(a(0, t, i));
            }
            if (an > 0.0) best = std::max(best, dot / (std::sqrt(an) * zn));
        }
        if (!std::isfinite(best))
            fail(errc::empty_prompt, "detect_concept: {} sentence {} has no scored token", set, index);
        return best;
    };
    concept_detection out;
    for (std::size_t s = 0; s < concept_sentences.size(); ++s) out.concept_scores.push_back(score(concept_sentences[s], s, "concept"));
    for (std::size_t s = 0; s < neutral_sentences.size(); ++s) out.neutral_scores.push_back(score(neutral_sentences[s], s, "neutral"));
    double wins = 0.0, mc = 0.0, mn = 0.0;
    for (double c : out.concept_scores) {
        mc += c / double(out.concept_scores.size());
        for (double n : out.neutral_scores) wins += c > n ? 1.0 : (c == n ? 0.5 : 0.0);
    }
    for (double n : out.neutral_scores) mn += n / double(out.neutral_scores.size());
    out.mean_difference = mc - mn;
    out.auroc = wins / double(out.concept_scores.size() * out.neutral_scores.size());
    return out;
}

} // namespace actlens
