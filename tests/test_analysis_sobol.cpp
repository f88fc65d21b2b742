#include "test_helpers.hpp"

#include <actlens/analysis/planted.hpp>
#include <actlens/analysis/sobol.hpp>
#include <actlens/methods/concept_importance.hpp>
#include <actlens/methods/metrics.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using namespace actlens;

TEST_CASE("sobol_total_indices: the analytic indices of f = m0 + 2 m1 + m0 m2", "[analysis][sobol]") {
    // With m uniform on [0, 1]^3: Var f = 79/144, and E[Var(f | the others)] is 28/144 for m0
    // ((1 + m2)^2 / 12 averaged), 48/144 for m1 (4/12) and 4/144 for m2 (m0^2 / 12 averaged).
    auto f = [](const std::vector<double>& m) { return m[0] + 2.0 * m[1] + m[0] * m[2]; };
    sobol_options o;
    o.samples = 8192;
    o.seed = 3;
    const sobol_result r = sobol_total_indices(3, f, o);
    CHECK(r.evaluations == 8192 * 5);
    CHECK(r.variance == Approx(79.0 / 144.0).epsilon(0.03));
    const double expected[3] = {28.0 / 79.0, 48.0 / 79.0, 4.0 / 79.0};
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        CHECK(r.total[i] == Approx(expected[i]).margin(0.02));
        CHECK(r.low[i] <= expected[i] + 0.01);
        CHECK(r.high[i] >= expected[i] - 0.01);
        CHECK(r.low[i] <= r.total[i]);
        CHECK(r.high[i] >= r.total[i]);
    }
    // An input f ignores has index 0; a constant f gives zeros, not NaNs.
    const sobol_result ignored = sobol_total_indices(2, [](const std::vector<double>& m) { return m[0]; }, o);
    CHECK(ignored.total[1] == 0.0);
    CHECK(ignored.total[0] == Approx(1.0).margin(0.05));
    const sobol_result flat = sobol_total_indices(2, [](const std::vector<double>&) { return 1.0; }, o);
    CHECK(flat.total == std::vector<double>{0.0, 0.0});
    require_error([] { sobol_total_indices(0, [](const std::vector<double>&) { return 0.0; }); }, errc::invalid_argument);
    require_error([] { sobol_total_indices(1, [](const std::vector<double>&) { return std::nan(""); }); }, errc::non_finite);
}

TEST_CASE("sobol_total_indices: the Ishigami function and a linear model, analytically", "[analysis][sobol]") {
    // Ishigami (Ishigami & Homma 1990): f = sin x1 + a sin^2 x2 + b x3^4 sin x1, x uniform on [-pi, pi]^3.
    // V = a^2/8 + b pi^4/5 + b^2 pi^8/18 + 1/2, V1 = (1 + b pi^4/5)^2 / 2, V2 = a^2/8, V13 = 8 b^2 pi^8/225;
    // S_T1 = (V1 + V13)/V, S_T2 = V2/V, S_T3 = V13/V.
    const double a = 7.0, b = 0.1, pi = 3.14159265358979323846;
    auto ishigami = [&](const std::vector<double>& m) {
        const double x1 = -pi + 2 * pi * m[0], x2 = -pi + 2 * pi * m[1], x3 = -pi + 2 * pi * m[2];
        return std::sin(x1) + a * std::sin(x2) * std::sin(x2) + b * std::pow(x3, 4) * std::sin(x1);
    };
    const double pi4 = std::pow(pi, 4), pi8 = std::pow(pi, 8);
    const double V = a * a / 8 + b * pi4 / 5 + b * b * pi8 / 18 + 0.5, V1 = 0.5 * std::pow(1 + b * pi4 / 5, 2),
                 V2 = a * a / 8, V13 = 8 * b * b * pi8 / 225;
    sobol_options o;
    o.samples = 16384;
    o.resamples = 0;
    const sobol_result r = sobol_total_indices(3, ishigami, o);
    CHECK(r.variance == Approx(V).epsilon(0.03));
    CHECK(r.total[0] == Approx((V1 + V13) / V).margin(0.02));
    CHECK(r.total[1] == Approx(V2 / V).margin(0.02));
    CHECK(r.total[2] == Approx(V13 / V).margin(0.02));
    // A linear model: S_Ti = w_i^2 / sum w^2 (equal input variances, no interaction).
    const std::vector<double> w{3.0, -1.0, 0.5, 2.0};
    const sobol_result lin =
        sobol_total_indices(4, [&](const std::vector<double>& m) { return w[0] * m[0] + w[1] * m[1] + w[2] * m[2] + w[3] * m[3]; }, o);
    const double ww = 9.0 + 1.0 + 0.25 + 4.0;
    for (std::size_t i = 0; i < 4; ++i) CHECK(lin.total[i] == Approx(w[i] * w[i] / ww).margin(0.015));
}

TEST_CASE("concept_importance: on the planted induction model, the key's concept carries the output", "[analysis][sobol]") {
    const planted_options po;
    const auto planted = planted_induction<double>(po);
    const planted_prompts prompts = make_planted_prompts(po, 1, 9);
    const logit_difference metric{prompts.answer, prompts.distractor};
    const std::size_t d = planted.model.config().d_model, V = po.vocab, Tn = po.positions;
    // Before layer 1 the residual holds A (token), B (previous token), P (position) and C (noise).
    // Concepts: the B code of the token "a" (what the induction key matches), one noise direction,
    // and the O code of the answer (empty before layer 1: its coefficient is 0 at every row).
    const std::int32_t a = prompts.clean[Tn - 1];
    tensor<double> z({3, d});
    z(0, V + std::size_t(a)) = 1.0;
    z(1, 3 * V + Tn) = 1.0;
    z(2, 2 * V + Tn + std::size_t(prompts.answer[0])) = 1.0;
    sobol_options o;
    o.samples = 64;
    const sobol_result r = concept_importance(planted.model, prompts.clean_view(), "blocks.1.hook_resid_pre",
                                              tensor_view<const double>(z.view()), metric, o);
    CHECK(r.evaluations == 64 * 5);
    CHECK(r.total[0] > 0.8);
    CHECK(r.total[1] < 0.05);
    CHECK(r.total[2] == 0.0);
    // Errors: dependent directions, another width, a hook the model lacks.
    tensor<double> twice({2, d});
    twice(0, 0) = twice(1, 0) = 1.0;
    require_error([&] { concept_importance(planted.model, prompts.clean_view(), "blocks.1.hook_resid_pre",
                                           tensor_view<const double>(twice.view()), metric, o); },
                  errc::invalid_argument, "linearly dependent");
    tensor<double> narrow({1, 5});
    narrow(0, 0) = 1.0;
    require_error([&] { concept_importance(planted.model, prompts.clean_view(), "blocks.1.hook_resid_pre",
                                           tensor_view<const double>(narrow.view()), metric, o); },
                  errc::shape_mismatch);
    require_error([&] { concept_importance(planted.model, prompts.clean_view(), "blocks.5.hook_resid_pre",
                                           tensor_view<const double>(z.view()), metric, o); },
                  errc::bad_layer_range);
}
