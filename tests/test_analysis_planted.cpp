#include "test_helpers.hpp"

#include <actlens/analysis/planted.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace actlens;

TEST_CASE("planted_induction: the built model does induction, and only on clean prompts", "[analysis][planted]") {
    const planted_options o;
    const auto planted = planted_induction<double>(o);
    const planted_prompts prompts = make_planted_prompts(o, 24, 3);
    const tensor<double> clean = planted.model.forward(prompts.clean_view());
    const tensor<double> corrupted = planted.model.forward(prompts.corrupted_view());
    const std::size_t last = o.positions - 1;
    for (std::size_t r = 0; r < prompts.rows; ++r) {
        std::size_t best = 0;
        for (std::size_t v = 1; v < o.vocab; ++v)
            if (clean(r, last, v) > clean(r, last, best)) best = v;
        CHECK(best == std::size_t(prompts.answer[r]));
        // Without the earlier "a b", nothing singles b out: its logit stays near the others'.
        const double gap_clean = clean(r, last, prompts.answer[r]) - clean(r, last, prompts.distractor[r]);
        const double gap_corrupted = corrupted(r, last, prompts.answer[r]) - corrupted(r, last, prompts.distractor[r]);
        CHECK(gap_clean > 0.5);
        CHECK(std::fabs(gap_corrupted) < 0.2 * gap_clean);
    }
}

TEST_CASE("planted_induction: activation patching finds exactly the two circuit heads", "[analysis][planted]") {
    planted_options o;
    o.heads = 3;
    const auto planted = planted_induction<double>(o);
    const planted_prompts prompts = make_planted_prompts(o, 8, 5);
    const logit_difference metric{prompts.answer, prompts.distractor};
    const patching_result patched =
        activation_patch(planted.model, prompts.clean_view(), prompts.corrupted_view(), metric, patch_target::head);
    REQUIRE(patched.scores.shape() == shape_t{2, 3});
    const recovery r = evaluate_recovery(tensor_view<const double>(patched.scores.view()), planted.truth);
    CHECK(r.k == 2);
    CHECK(r.precision_at_k == 1.0);
    CHECK(r.auroc == 1.0);
    // The patching effects of the circuit dwarf the distractors' (which act only through the norms).
    const double base = metric.value(planted.model.forward(prompts.corrupted_view()));
    for (std::size_t h = 1; h < 3; ++h)
        for (std::size_t l = 0; l < 2; ++l)
            CHECK(std::fabs(patched.scores(l, h) - base) < 0.1 * std::fabs(patched.scores(0, 0) - base));

    // Every attribution method can be scored the same way (numbers in the issue notes; here only
    // that the harness runs on each and its values are in range).
    attribution_options relp;
    relp.backward.rule = rule::relp;
    for (const patching_result& m :
         {attribution_patch(planted.model, prompts.clean_view(), prompts.corrupted_view(), metric, patch_target::head),
          attribution_patch(planted.model, prompts.clean_view(), prompts.corrupted_view(), metric, patch_target::head, relp)}) {
        tensor<double> effect = tensor<double>::copy_of(patched.scores.view());
        for (double& x : effect) x -= base;
        const recovery a = evaluate_recovery(tensor_view<const double>(m.scores.view()), planted.truth, &effect);
        CHECK(a.precision_at_k >= 0.0);
        CHECK(a.precision_at_k <= 1.0);
        CHECK(a.auroc >= 0.0);
        CHECK(a.auroc <= 1.0);
        CHECK(a.spearman >= -1.0);
        CHECK(a.spearman <= 1.0);
    }
}

TEST_CASE("evaluate_recovery: precision at k, AUROC with ties and Spearman by hand", "[analysis][planted]") {
    tensor<double> truth({4});
    truth(0) = 1.0;
    truth(3) = 1.0;
    const std::vector<double> s{0.9, -0.1, 0.5, 0.0};
    const recovery r = evaluate_recovery(tensor_view<const double>(s.data(), {4}), truth);
    CHECK(r.k == 2);
    CHECK(r.precision_at_k == 0.5);            // top 2 by |score|: 0 (true), 2 (false)
    CHECK(r.auroc == Approx(2.0 / 4.0));       // 0.9 beats 0.1 and 0.5; 0.0 beats neither
    const std::vector<double> tied{1.0, 1.0, 0.0, 1.0};
    CHECK(evaluate_recovery(tensor_view<const double>(tied.data(), {4}), truth).auroc == Approx(0.75)); // 1 vs 1 ties count 1/2
    tensor<double> ref({4});
    for (std::size_t i = 0; i < 4; ++i) ref(i) = std::fabs(s[i]) * 2.0;
    CHECK(evaluate_recovery(tensor_view<const double>(s.data(), {4}), truth, &ref).spearman == Approx(1.0));
    tensor<double> all_true({4});
    for (double& x : all_true) x = 1.0;
    require_error([&] { evaluate_recovery(tensor_view<const double>(s.data(), {4}), all_true); }, errc::invalid_argument);
    require_error([&] { make_planted_prompts(planted_options{}, 0, 1); }, errc::invalid_argument);
    planted_options small;
    small.vocab = 8;
    require_error([&] { make_planted_prompts(small, 2, 1); }, errc::invalid_argument, "vocab >= 16");
}
