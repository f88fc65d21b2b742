#include "test_helpers.hpp"

#include <actlens/analysis/planted.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/neuron_pathways.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using namespace actlens;

TEST_CASE("neuron_pathways: on a planted two-step recall, the value neuron and its query neuron", "[pathways]") {
    const planted_recall_options o;
    const auto model = planted_recall<double>(o);
    for (std::int32_t x : {1, 6, 10}) {
        CAPTURE(x);
        const std::vector<std::int32_t> prompt{0, 3, 7, x};
        const std::int32_t answer = recall_answer(o, x), other = (answer + 5) % std::int32_t(o.vocab);
        const tensor<double> logits = model.forward(prompt);
        std::size_t best = 0;
        for (std::size_t v = 1; v < o.vocab; ++v)
            if (logits(0, 3, v) > logits(0, 3, best)) best = v;
        REQUIRE(best == std::size_t(answer)); // the model does the recall
        const logit_difference metric{{answer}, {other}};
        const tensor_view<const std::int32_t> tokens(prompt.data(), {prompt.size()});
        const auto paths = neuron_pathways(model, tokens, metric);
        REQUIRE(!paths.empty());
        CHECK(paths[0].value.layer == 1);
        CHECK(paths[0].value.neuron == std::size_t(x) % o.subjects);
        REQUIRE(!paths[0].queries.empty());
        CHECK(paths[0].queries[0].layer == 0);
        CHECK(paths[0].queries[0].neuron == std::size_t(x));

        // The value score is a · dM/da: check dM/da by a finite difference through a hook.
        const pathway_neuron v = paths[0].value;
        auto metric_with = [&](double delta) {
            hook_set<double> h;
            h.add(hook_point{site::mlp_post, v.layer}, [&](tensor_view<double> a, const hook_context&) {
                a(0, 3, v.neuron) += delta;
            });
            run_options<double> r;
            r.hooks = &h;
            return metric.value(model.forward(prompt, r));
        };
        const auto [_, cache] = model.run_with_cache(prompt, "blocks.1.mlp.hook_post");
        const double a = cache.at("blocks.1.mlp.hook_post")(0, 3, v.neuron);
        const double grad = (metric_with(1e-5) - metric_with(-1e-5)) / 2e-5;
        CHECK(v.score == Approx(a * grad).epsilon(1e-5)); // only the last position's activation matters here

        // Ablating the pathway's query neurons removes the answer; scale 1 changes nothing.
        hook_set<double> ablate, keep;
        edit_pathway(ablate, paths[0], 0.0);
        edit_pathway(keep, paths[0], 1.0);
        run_options<double> r;
        r.hooks = &keep;
        CHECK(metric.value(model.forward(prompt, r)) == metric.value(logits));
        r.hooks = &ablate;
        CHECK(metric.value(model.forward(prompt, r)) < 0.1 * metric.value(logits));
    }
    require_error([&] { hook_set<double> h; edit_pathway(h, neuron_pathway{}, std::nan("")); }, errc::invalid_argument);
    const std::vector<std::int32_t> two{1, 2, 3, 4};
    require_error([&] { neuron_pathways(model, tensor_view<const std::int32_t>(two.data(), {2, 2}), logit_difference{{1, 1}, {2, 2}}); },
                  errc::shape_mismatch, "one prompt");
}
