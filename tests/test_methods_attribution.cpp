#include "tiny_models.hpp"

#include <actlens/analysis/correlation.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace actlens;

namespace {
tiny::run_pair two_edited_tokens(std::size_t vocab) {
    tiny::run_pair r;
    r.clean = tiny::tokens(12, vocab, 1);
    r.corrupted = r.clean;
    r.corrupted[2] = (r.corrupted[2] + 5) % std::int32_t(vocab);
    r.corrupted[6 + 3] = (r.corrupted[6 + 3] + 3) % std::int32_t(vocab);
    return r;
}
} // namespace

TEST_CASE("attribution_patch: AtP is exact where the metric is linear in the patched activation", "[attribution]") {
    for (auto config : {tiny::gpt2(), tiny::llama()}) {
        // With a huge epsilon every norm is a fixed linear map, so after the last block's MLP the
        // metric is linear in hook_mlp_out and hook_resid_post: AtP must equal activation patching.
        config.norm_eps = 1e12;
        const auto m = make_random_transformer<double>(config, 6);
        const auto runs = two_edited_tokens(config.vocab_size);
        const logit_difference ld{{1, 2}, {3, 4}};
        const int last = int(config.n_layers) - 1;
        for (auto target : {patch_target::mlp_out, patch_target::resid_post})
            for (auto direction : {patch_direction::denoising, patch_direction::noising}) {
                patching_options po;
                po.direction = direction;
                attribution_options ao;
                ao.direction = direction;
                const auto truth = activation_patch_reference(m, runs.cv(), runs.xv(), ld, target, po);
                const double base = ld.value(m.forward(direction == patch_direction::denoising ? runs.xv() : runs.cv()));
                const auto atp = attribution_patch(m, runs.cv(), runs.xv(), ld, target, ao);
                for (std::size_t t = 0; t < 6; ++t)
                    CHECK(atp.scores(std::size_t(last), t) == Approx(truth.scores(std::size_t(last), t) - base).margin(1e-9));
            }
    }
}

TEST_CASE("attribution_patch: RelP equals AtP where no rule applies, and differs where one does", "[attribution]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<double>(config, 2);
    const auto runs = two_edited_tokens(config.vocab_size);
    const logit_difference ld{{1, 2}, {3, 4}};
    attribution_options relp;
    relp.backward.rule = rule::relp;
    const auto a = attribution_patch(m, runs.cv(), runs.xv(), ld, patch_target::resid_pre);
    const auto r = attribution_patch(m, runs.cv(), runs.xv(), ld, patch_target::resid_pre, relp);
    bool differ = false;
    for (std::size_t i = 0; i < a.scores.size(); ++i) differ = differ || std::abs(a.scores.data()[i] - r.scores.data()[i]) > 1e-9;
    CHECK(differ);
    // Unpatched positions score zero in both (the activations are equal there).
    CHECK(a.scores(0, 0) == 0.0);
    CHECK(r.scores(0, 0) == 0.0);
}

TEST_CASE("attribution_patch: a kept attribution_workspace gives the results of fresh buffers", "[attribution]") {
    // The scratch is reused across targets, rules and sequence lengths; stale slots must not leak in.
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 4);
    const auto runs = two_edited_tokens(config.vocab_size);
    const auto long_clean = tiny::tokens(20, config.vocab_size, 5);
    auto long_corrupted = long_clean;
    long_corrupted[4] = (long_corrupted[4] + 1) % std::int32_t(config.vocab_size);
    const tensor_view<const std::int32_t> lc(long_clean.data(), {2, 10}), lx(long_corrupted.data(), {2, 10});
    const logit_difference ld{{1, 2}, {3, 4}};
    attribution_workspace<float> scratch;
    for (auto rule_kind : {rule::gradient, rule::relp})
        for (auto target : {patch_target::resid_pre, patch_target::head, patch_target::mlp_out})
            for (int size = 0; size < 2; ++size) {
                attribution_options ao;
                ao.backward.rule = rule_kind;
                const auto c = size ? lc : runs.cv();
                const auto x = size ? lx : runs.xv();
                const auto kept = attribution_patch(m, c, x, ld, target, ao, scratch);
                const auto fresh = attribution_patch(m, c, x, ld, target, ao);
                REQUIRE(kept.scores.shape() == fresh.scores.shape());
                for (std::size_t i = 0; i < kept.scores.size(); ++i) REQUIRE(kept.scores.data()[i] == fresh.scores.data()[i]);
            }
}

TEST_CASE("integrated_gradients: completeness over a full cut, and agreement with patching", "[attribution]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<double>(config, 12);
    const auto runs = two_edited_tokens(config.vocab_size);
    const logit_difference ld{{1, 2}, {3, 4}};
    attribution_options o;
    o.ig_steps = 64;
    // Each layer's resid_pre (all positions) is a cut of the graph: the scores of one layer sum to
    // M(clean) - M(corrupted), up to the midpoint rule's O(1/N^2) error.
    const auto ig = integrated_gradients(m, runs.cv(), runs.xv(), ld, patch_target::resid_pre, o);
    const double delta = ld.value(m.forward(runs.cv())) - ld.value(m.forward(runs.xv()));
    for (std::size_t l = 0; l < config.n_layers; ++l) {
        double sum = 0;
        for (std::size_t t = 0; t < 6; ++t) sum += ig.scores(l, t);
        CHECK(sum == Approx(delta).epsilon(1e-3));
    }
    const auto truth = activation_patch(m, runs.cv(), runs.xv(), ld, patch_target::resid_pre);
    const double corrupted = ld.value(m.forward(runs.xv()));
    std::vector<double> effect, estimate;
    for (std::size_t i = 0; i < truth.scores.size(); ++i) {
        effect.push_back(truth.scores.data()[i] - corrupted);
        estimate.push_back(ig.scores.data()[i]);
    }
    CHECK(pearson(effect, estimate).value > 0.9);
}
