// Tests of the std::vector overloads of the patching and attribution methods (methods/patching.hpp,
// attribution.hpp, atp_star.hpp): one prompt given as a token vector gives the scores of the same
// prompt given as a [1, T] view, bit for bit.
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/methods/atp_star.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

using namespace actlens;

TEST_CASE("vector overloads: patching, AtP, IG and AtP* on token vectors equal the [1, T] views", "[patching]") {
    const transformer m = make_random_transformer<float>(tiny::llama(), 21);
    const std::vector<std::int32_t> clean = {1, 17, 5, 33, 8, 2}, corrupted = {1, 17, 9, 33, 8, 2};
    const tensor_view<const std::int32_t> clean_view(clean.data(), {1, clean.size()});
    const tensor_view<const std::int32_t> corrupted_view(corrupted.data(), {1, corrupted.size()});
    REQUIRE(prompt_view(clean).shape() == clean_view.shape());
    const logit_difference metric{{4}, {7}};

    for (patch_target t : {patch_target::resid_pre, patch_target::head}) {
        CHECK(same_bits(activation_patch(m, clean, corrupted, metric, t).scores,
                        activation_patch(m, clean_view, corrupted_view, metric, t).scores));
        CHECK(same_bits(activation_patch_reference(m, clean, corrupted, metric, t).scores,
                        activation_patch_reference(m, clean_view, corrupted_view, metric, t).scores));
        attribution_options relp;
        relp.backward.rule = rule::relp;
        relp.ig_steps = 3;
        CHECK(same_bits(attribution_patch(m, clean, corrupted, metric, t, relp).scores,
                        attribution_patch(m, clean_view, corrupted_view, metric, t, relp).scores));
        CHECK(same_bits(integrated_gradients(m, clean, corrupted, metric, t, relp).scores,
                        integrated_gradients(m, clean_view, corrupted_view, metric, t, relp).scores));
    }
    const atp_star_result a = atp_star(m, clean, corrupted, metric);
    const atp_star_result b = atp_star(m, clean_view, corrupted_view, metric);
    CHECK(same_bits(a.scores, b.scores));
    CHECK(same_bits(a.query, b.query));
    // The overload did patch something: not every score is the unpatched metric.
    const patching_result r = activation_patch(m, clean, corrupted, metric, patch_target::resid_pre);
    bool varies = false;
    for (double s : r.scores) varies = varies || s != r.scores.data()[0];
    CHECK(varies);
}
