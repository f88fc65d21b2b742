#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/core/rng.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/feature_calibration.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_hierarchy.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

using namespace actlens;

namespace {

/// Non-negative mixtures of 6 sparse signed patterns, themselves non-negative mixtures of 3 (a two-level hierarchy).
tensor<float> hierarchical_data(std::size_t n, std::size_t d, std::uint64_t seed,
                                std::vector<std::vector<double>>* planted_top = nullptr) {
    rng gen(seed);
    std::vector<std::vector<double>> top(3, std::vector<double>(d, 0.0)), mid(6, std::vector<double>(d, 0.0));
    for (auto& f : top)
        for (std::size_t i = 0; i < d; ++i) f[i] = gen.uniform() < 0.3 ? gen.normal() : 0.0;
    // Mid-level patterns: each top pattern alone, and the three sums of two (all distinct; the tops
    // are the extreme rays of the cone the mid patterns span, so a non-negative mix recovers them).
    for (std::size_t k = 0; k < 6; ++k)
        for (std::size_t i = 0; i < d; ++i) mid[k][i] = k < 3 ? top[k][i] : top[k - 3][i] + top[(k - 2) % 3][i];
    if (planted_top) *planted_top = top;
    tensor<float> a({n, d});
    for (std::size_t t = 0; t < n; ++t) {
        const std::size_t k = t % 6;
        const double c = 0.5 + gen.uniform();
        for (std::size_t i = 0; i < d; ++i) a(t, i) = float(c * mid[k][i] + 0.01 * gen.normal());
    }
    return a;
}

} // namespace

TEST_CASE("fit_snmf_hierarchy: levels fit the previous level's features, and tuning lowers the error",
          "[snmf][hierarchy]") {
    std::vector<std::vector<double>> top;
    const tensor<float> a = hierarchical_data(240, 20, 4, &top);
    snmf_hierarchy_options o;
    o.ranks = {6, 3};
    o.level.sparsity = 0.5;
    o.level.max_iter = 3000;
    o.level.patience = 500;
    o.level.init = snmf_init::svd; // random starts leave one mid-level pattern at a local minimum
    o.fine_tune_steps = 200;
    o.learning_rate = 1e-2;
    const snmf_hierarchy h = fit_snmf_hierarchy(a.view(), o);
    REQUIRE(h.levels.size() == 2);
    snmf_options second = o.level;
    second.rank = 3;
    const snmf_result direct = fit_snmf(tensor_view<const float>(h.levels[0].features.view()), second);
    CHECK(same_bits(direct.features, h.levels[1].features));
    REQUIRE(h.fine_tune_loss.size() == 201);
    CHECK(h.fine_tune_loss.back() < h.fine_tune_loss.front());
    CHECK(h.mixing.size() == 1);
    CHECK(h.mixing[0].shape() == shape_t{6, 3});
    CHECK(h.coefficients.shape() == shape_t{240, 6});
    for (float g : h.coefficients) CHECK(g >= 0.0f);
    for (float m : h.mixing[0]) CHECK(m >= 0.0f);
    // Level 1's tuned features are H₂ F₂, and the loss is the error of G₁ H₂ F₂, recomputed by hand.
    double err = 0.0;
    for (std::size_t t = 0; t < 240; ++t)
        for (std::size_t i = 0; i < 20; ++i) {
            double p = 0.0;
            for (std::size_t k = 0; k < 6; ++k) {
                double f = 0.0;
                for (std::size_t j = 0; j < 3; ++j) f += double(h.mixing[0](k, j)) * double(h.features[1](j, i));
                p += double(h.coefficients(t, k)) * f;
                if (t == 0) CHECK(h.features[0](k, i) == Approx(f).margin(1e-5));
            }
            err += (p - double(a(t, i))) * (p - double(a(t, i)));
        }
    CHECK(h.fine_tune_loss.back() == Approx(err / (240.0 * 20.0)).epsilon(1e-3));
    // The top level recovers the planted top patterns: each has a tuned level-2 feature with |cosine| >= 0.9.
    for (const auto& pattern : top) {
        double best = 0.0;
        for (std::size_t j = 0; j < 3; ++j) {
            double dot = 0.0, pp = 0.0, ff = 0.0;
            for (std::size_t i = 0; i < 20; ++i) {
                dot += pattern[i] * double(h.features[1](j, i));
                pp += pattern[i] * pattern[i];
                ff += double(h.features[1](j, i)) * double(h.features[1](j, i));
            }
            best = std::max(best, std::fabs(dot) / std::sqrt(pp * ff));
        }
        CHECK(best >= 0.9);
    }
    require_error([&] { snmf_hierarchy_options bad = o; bad.ranks = {3, 6}; fit_snmf_hierarchy(a.view(), bad); },
                  errc::invalid_argument, "decrease");
}

TEST_CASE("hierarchy gradients equal finite differences", "[snmf][hierarchy]") {
    using detail::hierarchy_matrix;
    rng gen(8);
    auto random = [&](Eigen::Index r, Eigen::Index c) {
        hierarchy_matrix m(r, c);
        for (Eigen::Index i = 0; i < r; ++i)
            for (Eigen::Index j = 0; j < c; ++j) m(i, j) = float(gen.uniform());
        return m;
    };
    const hierarchy_matrix a = random(7, 5);
    detail::hierarchy_factors x, g, scratch;
    x.g = random(7, 4);
    x.h = {random(4, 3), random(3, 2)};
    x.f = random(2, 5);
    detail::hierarchy_loss_and_gradients(a, x, g);
    const float h = 1e-2f;
    auto check = [&](hierarchy_matrix& p, const hierarchy_matrix& analytic) {
        for (Eigen::Index i = 0; i < p.rows(); ++i)
            for (Eigen::Index j = 0; j < p.cols(); ++j) {
                const float keep = p(i, j);
                p(i, j) = keep + h;
                const double up = detail::hierarchy_loss_and_gradients(a, x, scratch);
                p(i, j) = keep - h;
                const double down = detail::hierarchy_loss_and_gradients(a, x, scratch);
                p(i, j) = keep;
                CHECK(analytic(i, j) == Approx((up - down) / (2.0 * h)).epsilon(0.02).margin(1e-4));
            }
    };
    check(x.g, g.g);
    check(x.h[0], g.h[0]);
    check(x.h[1], g.h[1]);
    check(x.f, g.f);
}

TEST_CASE("calibrate_alpha and detect_concept on a tiny model's SNMF features", "[snmf][calibration]") {
    const auto config = tiny::llama();
    const transformer m = make_random_transformer<float>(config, 5);
    std::vector<std::vector<std::int32_t>> corpus;
    for (std::uint32_t s = 0; s < 12; ++s) corpus.push_back(tiny::tokens(8, config.vocab_size, s));
    const captured_activations cap = capture_activations(m, corpus, "blocks.1.mlp.hook_post");
    snmf_options so;
    so.rank = 4;
    so.sparsity = 0.5;
    so.max_iter = 100;
    const snmf_result fit = fit_snmf(cap.values.view(), so);
    const std::vector<std::int32_t> prompt = tiny::tokens(5, config.vocab_size, 99);

    CHECK(steering_kl(m, 1, fit, 0, prompt, 0.0) == Approx(0.0).margin(1e-9));
    // KL grows with α on a grid; the calibrated α sits where the grid crosses the target.
    const double target = 0.05;
    alpha_calibration_options ao;
    ao.low = 0.01;
    ao.high = 50.0;
    ao.steps = 40;
    const alpha_calibration c = calibrate_alpha(m, 1, fit, 0, prompt, target, ao);
    CHECK(c.converged);
    CHECK(std::fabs(c.kl - target) <= 0.01 * target);
    CHECK(steering_kl(m, 1, fit, 0, prompt, c.alpha) == Approx(c.kl));
    double below = 0.0, above = ao.high;
    for (double alpha = 0.25; alpha <= ao.high; alpha += 0.25) {
        const double kl = steering_kl(m, 1, fit, 0, prompt, alpha);
        if (kl < target) below = alpha;
        else if (above == ao.high) above = alpha;
    }
    CHECK(c.alpha >= below - 0.25);
    CHECK(c.alpha <= above + 0.25);
    ao.sign = -1.0;
    CHECK(calibrate_alpha(m, 1, fit, 0, prompt, target, ao).alpha < 0.0);
    require_error([&] { calibrate_alpha(m, 1, fit, 0, prompt, 0.0); }, errc::invalid_argument, "target_kl");

    // Detection scores by hand: the largest cosine of feature 0 with any kept token's activation.
    const std::vector<std::vector<std::int32_t>> concept_set{corpus[0], corpus[1]}, neutral{corpus[2], corpus[3], corpus[4]};
    const concept_detection det = detect_concept(m, 1, fit, 0, concept_set, neutral, {corpus[0][0]});
    auto by_hand = [&](const std::vector<std::int32_t>& s) {
        const auto cache = m.run_with_cache(s, "blocks.1.mlp.hook_post").second;
        const tensor<float>& a = cache.at("blocks.1.mlp.hook_post");
        double best = -2.0;
        for (std::size_t t = 0; t < s.size(); ++t) {
            if (s[t] == corpus[0][0]) continue;
            double dot = 0.0, an = 0.0, zn = 0.0;
            for (std::size_t i = 0; i < config.d_mlp; ++i) {
                dot += double(a(0, t, i)) * double(fit.features(0, i));
                an += double(a(0, t, i)) * double(a(0, t, i));
                zn += double(fit.features(0, i)) * double(fit.features(0, i));
            }
            best = std::max(best, dot / std::sqrt(an * zn));
        }
        return best;
    };
    double wins = 0.0;
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(det.concept_scores[i] == Approx(by_hand(concept_set[i])).epsilon(1e-9));
        for (std::size_t j = 0; j < 3; ++j) wins += det.concept_scores[i] > det.neutral_scores[j];
    }
    for (std::size_t j = 0; j < 3; ++j) CHECK(det.neutral_scores[j] == Approx(by_hand(neutral[j])).epsilon(1e-9));
    CHECK(det.auroc == Approx(wins / 6.0));
    require_error([&] { detect_concept(m, 1, fit, 0, {}, neutral); }, errc::invalid_argument);
    require_error([&] { detect_concept(m, 1, fit, 9, concept_set, neutral); }, errc::out_of_range);
}
