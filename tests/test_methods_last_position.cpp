// Tests of the last-position shortcuts of patching and attribution: a metric that reads the last
// position lets attribution_patch compute the base run's logits for that position only (and a
// metric without a final-norm gradient then takes the vocabulary product on that row alone), and
// lets activation_patch reuse keys and values and batch nearby positions. A wrapper that hides the
// metric's `position` turns the shortcuts off, so the two paths must agree; normalized_metric reads
// where its base metric reads.
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

using namespace actlens;

namespace {

// Forwards to a metric but has no `position` (nor `base`) member: the methods must then assume it
// reads every position and take the general path.
template <class Metric>
struct every_position {
    Metric inner;
    template <class T>
    double value(tensor_view<const T> logits) const {
        return inner.value(logits);
    }
    template <class T>
    void logits_gradient(tensor_view<const T> logits, tensor_view<T> d_logits) const {
        inner.logits_gradient(logits, d_logits);
    }
};

// Reads the last position like its inner metric but does not say which logits it reads
// (no logit_tokens): a sweep must then unembed every column.
template <class Metric>
struct every_logit {
    Metric inner;
    int position = -1;
    template <class T>
    double value(tensor_view<const T> logits) const {
        return inner.value(logits);
    }
};

tiny::run_pair unrelated_runs(std::size_t vocab) {
    tiny::run_pair r;
    r.clean = tiny::tokens(16, vocab, 3);
    r.corrupted = tiny::tokens(16, vocab, 4);
    return r;
}

double max_abs(const tensor<double>& t) {
    double m = 0;
    for (double v : t) m = std::max(m, std::abs(v));
    return m;
}

void check_close(const tensor<double>& a, const tensor<double>& b, double rel) {
    REQUIRE(a.shape() == b.shape());
    const double scale = std::max(max_abs(a), 1e-300);
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a.data()[i] - b.data()[i]));
    CHECK(worst <= rel * scale);
}

} // namespace

TEST_CASE("attribution_patch: the last-position logits give the scores of the full logits", "[attribution]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const auto m = make_random_transformer<double>(named.config, 21);
        const auto r = unrelated_runs(named.config.vocab_size);
        const token_log_prob tlp{{3, 9}};
        const auto norm = normalize(tlp, 0.5, -1.5);
        attribution_options relp;
        relp.backward.rule = rule::relp;
        for (const attribution_options& ao : {attribution_options{}, relp})
            for (patch_target target : {patch_target::resid_pre, patch_target::attn_out, patch_target::head}) {
                const auto fast = attribution_patch(m, r.cv(), r.xv(), tlp, target, ao);
                const auto full = attribution_patch(m, r.cv(), r.xv(), every_position<token_log_prob>{tlp}, target, ao);
                CHECK(max_abs(fast.scores) > 1e-6);
                check_close(fast.scores, full.scores, 1e-10);
                const auto fast_norm = attribution_patch(m, r.cv(), r.xv(), norm, target, ao);
                const auto full_norm =
                    attribution_patch(m, r.cv(), r.xv(), every_position<decltype(norm)>{norm}, target, ao);
                check_close(fast_norm.scores, full_norm.scores, 1e-10);
                // normalized: the scores scale by 1 / (clean - corrupted) = 1 / 2
                for (std::size_t i = 0; i < fast.scores.size(); ++i)
                    CHECK(fast_norm.scores.data()[i] == Approx(fast.scores.data()[i] / 2.0).margin(1e-12));
            }
    }
}

TEST_CASE("activation_patch: a normalized metric reads where its base reads, positions batched", "[patching]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<double>(config, 22);
    const auto r = unrelated_runs(config.vocab_size);
    const logit_difference ld{{1, 2}, {3, 4}};
    const auto norm = normalize(ld, 2.0, -0.5);
    for (std::size_t rows : {1, 8, 64, 1000}) { // 1: one patch per forward; 1000: a layer at once
        INFO("rows_per_forward " << rows);
        patching_options o;
        o.rows_per_forward = rows;
        const auto truth = activation_patch_reference(m, r.cv(), r.xv(), norm, patch_target::resid_pre, o);
        const auto fast = activation_patch(m, r.cv(), r.xv(), norm, patch_target::resid_pre, o);
        const auto hidden = activation_patch(m, r.cv(), r.xv(), every_position<decltype(norm)>{norm},
                                             patch_target::resid_pre, o);
        const auto plain = activation_patch(m, r.cv(), r.xv(), ld, patch_target::resid_pre, o);
        CHECK(max_abs(truth.scores) > 1e-6);
        check_close(fast.scores, truth.scores, 1e-10);
        check_close(hidden.scores, truth.scores, 1e-10);
        for (std::size_t i = 0; i < fast.scores.size(); ++i)
            CHECK(fast.scores.data()[i] == Approx((plain.scores.data()[i] + 0.5) / 2.5).margin(1e-12));
    }
}

TEST_CASE("integrated_gradients: last-position logits and a kept workspace give the same scores", "[attribution]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const auto m = make_random_transformer<double>(named.config, 23);
        const auto r = unrelated_runs(named.config.vocab_size);
        const token_log_prob tlp{{3, 9}};
        attribution_options o;
        o.ig_steps = 3;
        attribution_workspace<double> kept;
        for (patch_target target : {patch_target::resid_pre, patch_target::attn_out, patch_target::head}) {
            const auto fast = integrated_gradients(m, r.cv(), r.xv(), tlp, target, o);
            const auto full = integrated_gradients(m, r.cv(), r.xv(), every_position<token_log_prob>{tlp}, target, o);
            CHECK(max_abs(fast.scores) > 1e-6);
            check_close(fast.scores, full.scores, 1e-10);
            // The same workspace across targets (different sites, different tapes): identical scores.
            const auto reused = integrated_gradients(m, r.cv(), r.xv(), tlp, target, o, kept);
            REQUIRE(reused.scores.shape() == fast.scores.shape());
            for (std::size_t i = 0; i < fast.scores.size(); ++i) CHECK(reused.scores.data()[i] == fast.scores.data()[i]);
        }
    }
}

TEST_CASE("activation_patch: a metric's logit_tokens give the scores of the full unembedding", "[patching]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const auto m = make_random_transformer<double>(named.config, 24);
        const auto r = unrelated_runs(named.config.vocab_size);
        const logit_difference ld{{1, 7}, {3, 4}};
        CHECK(ld.logit_tokens() == std::vector<std::int32_t>{1, 3, 4, 7});
        const auto norm = normalize(ld, 1.5, -0.5);
        CHECK(norm.logit_tokens() == ld.logit_tokens());
        for (patch_target target : {patch_target::resid_pre, patch_target::mlp_out, patch_target::head}) {
            const auto sparse = activation_patch(m, r.cv(), r.xv(), norm, target);
            const auto full = activation_patch(m, r.cv(), r.xv(), every_logit<decltype(norm)>{norm}, target);
            CHECK(max_abs(sparse.scores) > 1e-6);
            check_close(sparse.scores, full.scores, 1e-12);
        }
        const logit_difference outside{{1, int(named.config.vocab_size)}, {3, 4}};
        require_error([&] { activation_patch(m, r.cv(), r.xv(), outside, patch_target::resid_pre); },
                      errc::token_out_of_range, "activation_patch");
        const logit_difference no_tokens{};
        require_error([&] { activation_patch(m, r.cv(), r.xv(), no_tokens, patch_target::resid_pre); },
                      errc::shape_mismatch, "correct tokens");
    }
}
