#include "tiny_models.hpp"

#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace actlens;

TEST_CASE("activation_patch: the fast plan equals the brute-force loop for every site", "[patching]") {
    for (const auto& named : tiny::all()) {
        const std::string& family = named.name;
        const model_config& config = named.config;
        SECTION(family) {
            const auto m = make_random_transformer<float>(config, 21);
            const std::size_t B = 2, S = 6;
            const auto clean = tiny::tokens(B * S, config.vocab_size, 1);
            auto corrupted = clean;
            corrupted[2] = (corrupted[2] + 5) % std::int32_t(config.vocab_size); // row 0, position 2
            corrupted[S + 4] = (corrupted[S + 4] + 7) % std::int32_t(config.vocab_size);
            const tensor_view<const std::int32_t> cv(clean.data(), {B, S}), xv(corrupted.data(), {B, S});
            const logit_difference last{{3, 4}, {5, 6}};
            logit_difference middle{{3, 4}, {5, 6}, 4}; // reads position 4: no key/value reuse
            for (auto target : {patch_target::resid_pre, patch_target::resid_mid, patch_target::resid_post,
                                patch_target::attn_out, patch_target::mlp_out, patch_target::head,
                                patch_target::head_by_position, patch_target::neuron})
                for (auto direction : {patch_direction::denoising, patch_direction::noising}) {
                    if (target == patch_target::resid_mid && config.parallel_residual) continue; // no such site
                    patching_options o;
                    o.direction = direction;
                    o.rows_per_forward = 20; // several waves, each mixing layers
                    for (const logit_difference* metric : {&last, static_cast<const logit_difference*>(&middle)}) {
                        const auto fast = activation_patch(m, cv, xv, *metric, target, o);
                        const auto slow = activation_patch_reference(m, cv, xv, *metric, target, o);
                        REQUIRE(fast.scores.shape() == slow.scores.shape());
                        CHECK(fast.axes == slow.axes);
                        double worst = 0, spread = 0;
                        for (std::size_t i = 0; i < fast.scores.size(); ++i) {
                            worst = std::max(worst, std::abs(fast.scores.data()[i] - slow.scores.data()[i]));
                            spread = std::max(spread, std::abs(slow.scores.data()[i] - slow.scores.data()[0]));
                        }
                        INFO("target " << int(target) << " direction " << int(direction) << " position "
                                       << metric->position);
                        CHECK(worst <= 1e-5);
                        if (target != patch_target::neuron) CHECK(spread > 1e-3); // the sweep measures something
                    }
                }
        }
    }
}

TEST_CASE("activation_patch: patching the whole clean residual restores the clean metric", "[patching]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 4);
    const auto clean = tiny::tokens(5, config.vocab_size, 2);
    auto corrupted = clean;
    corrupted[1] = (corrupted[1] + 9) % std::int32_t(config.vocab_size);
    const logit_difference ld{{7}, {8}};
    const tensor_view<const std::int32_t> cv(clean.data(), {1, 5}), xv(corrupted.data(), {1, 5});
    const double clean_ld = ld.value(m.forward(cv).view());
    const double corrupt_ld = ld.value(m.forward(xv).view());
    const auto r = activation_patch(m, cv, xv, ld, patch_target::resid_pre);
    REQUIRE(r.scores.shape() == shape_t{config.n_layers, 5});
    // Position 1 at layer 0 carries everything that differs: patching it restores the clean run;
    // patching any other position of layer 0 changes nothing.
    CHECK(r.scores(0, 1) == Approx(clean_ld).margin(1e-5));
    CHECK(r.scores(0, 0) == Approx(corrupt_ld).margin(1e-5));
    CHECK(r.scores(0, 3) == Approx(corrupt_ld).margin(1e-5));
    // After the last block only the last position reaches the metric, and it carries all of it.
    const auto post = activation_patch(m, cv, xv, ld, patch_target::resid_post);
    CHECK(post.scores(config.n_layers - 1, 4) == Approx(clean_ld).margin(1e-5));
    CHECK(post.scores(config.n_layers - 1, 3) == Approx(corrupt_ld).margin(1e-5));

    patching_options o;
    std::size_t calls = 0, last_done = 0;
    o.progress = [&](std::size_t done, std::size_t total) {
        ++calls;
        CHECK(done > last_done);
        CHECK(total == config.n_layers * 5);
        last_done = done;
    };
    activation_patch(m, cv, xv, ld, patch_target::resid_pre, o);
    CHECK(last_done == config.n_layers * 5);
    CHECK(calls > 0);
    const std::vector<std::int32_t> shorter(4, 1);
    CHECK_THROWS_WITH(activation_patch(m, cv, tensor_view<const std::int32_t>(shorter.data(), {1, 4}), ld,
                                       patch_target::resid_pre),
                      Catch::Contains("differ in shape"));
}
