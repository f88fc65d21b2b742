// actlens/model/sampling.hpp: choosing the next token from logits: greedy, temperature, top-k, top-p.
#pragma once

#include <actlens/core/rng.hpp>
#include <actlens/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace actlens {

/// How to pick the next token. temperature == 0 is greedy (argmax, lowest id on ties).
struct sampling_options {
    double temperature = 0.0;
    std::size_t top_k = 0;    ///< keep the k most likely tokens (0: all)
    double top_p = 1.0;       ///< keep the smallest set whose probability reaches top_p (1: all)
    std::uint64_t seed = 0;   ///< the same seed gives the same tokens on every platform

    /// Throws actlens::error (generate.501) naming the bad field.
    void validate() const {
        if (!(temperature >= 0.0) || !std::isfinite(temperature))
            fail(errc::bad_sampling, "sampling: temperature must be finite and >= 0, got {}", temperature);
        if (!(top_p > 0.0 && top_p <= 1.0)) fail(errc::bad_sampling, "sampling: top_p must be in (0, 1], got {}", top_p);
    }
};

/// Samples token ids from rows of logits. Holds its scratch space and its random state: one
/// sampler per sequence being generated (not thread-safe).
class sampler {
public:
    explicit sampler(const sampling_options& options) : m_options(options), m_rng(options.seed) { options.validate(); }

    /// The next token for one row of `vocab` logits. Throws actlens::error (arg.104) on NaN logits.
    template <class T>
    std::int32_t sample(const T* logits, std::size_t vocab) {
        if (vocab == 0) fail(errc::invalid_argument, "sampler: empty logits row");
        std::size_t best = 0;
        for (std::size_t i = 0; i < vocab; ++i) {
            if (std::isnan(logits[i])) fail(errc::non_finite, "sampler: logit {} is NaN", i);
            if (logits[i] > logits[best]) best = i;
        }
        if (m_options.temperature == 0.0 || m_options.top_k == 1) return static_cast<std::int32_t>(best);

        // Probabilities at the temperature, in double, relative to the maximum logit.
        m_probs.resize(vocab);
        m_order.resize(vocab);
        const double max = double(logits[best]);
        for (std::size_t i = 0; i < vocab; ++i) m_probs[i] = std::exp((double(logits[i]) - max) / m_options.temperature);
        std::iota(m_order.begin(), m_order.end(), 0);
        // Most likely first; ties by id, so that the kept set does not depend on the sort.
        auto more_likely = [this](std::int32_t a, std::int32_t b) {
            return m_probs[std::size_t(a)] != m_probs[std::size_t(b)] ? m_probs[std::size_t(a)] > m_probs[std::size_t(b)]
                                                                      : a < b;
        };
        std::size_t keep = vocab;
        if (m_options.top_k > 0 && m_options.top_k < vocab) {
            keep = m_options.top_k;
            std::partial_sort(m_order.begin(), m_order.begin() + std::ptrdiff_t(keep), m_order.end(), more_likely);
        } else {
            std::sort(m_order.begin(), m_order.end(), more_likely);
        }
        double total = 0.0;
        for (std::size_t i = 0; i < keep; ++i) total += m_probs[std::size_t(m_order[i])];
        if (m_options.top_p < 1.0) {
            double cumulative = 0.0;
            std::size_t i = 0;
            while (i < keep) {
                cumulative += m_probs[std::size_t(m_order[i++])] / total;
                if (cumulative >= m_options.top_p) break;
            }
            keep = i;
            total = 0.0;
            for (std::size_t j = 0; j < keep; ++j) total += m_probs[std::size_t(m_order[j])];
        }
        const double target = m_rng.uniform() * total;
        double cumulative = 0.0;
        for (std::size_t i = 0; i < keep; ++i) {
            cumulative += m_probs[std::size_t(m_order[i])];
            if (target < cumulative) return m_order[i];
        }
        return m_order[keep - 1]; // rounding left target at the very top
    }

private:
    sampling_options m_options;
    rng m_rng;
    std::vector<double> m_probs;
    std::vector<std::int32_t> m_order;
};

} // namespace actlens
