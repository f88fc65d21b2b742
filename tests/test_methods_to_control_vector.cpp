// Tests of to_control_vector (methods/control_vector.hpp): the control vector made from a steering
// vector steers exactly where and by how much add_steering does, before and after a GGUF round trip.
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/methods/control_vector.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

using namespace actlens;

namespace {

steering_vector<float> direction_at(const char* point, std::size_t d) {
    steering_vector<float> v;
    v.point = hook_point::parse(point);
    v.direction = tensor<float>({d});
    for (std::size_t k = 0; k < d; ++k) v.direction(k) = std::sin(0.7f * float(k) + 0.3f);
    return v;
}

tensor<float> logits_with(const transformer& m, const std::vector<std::int32_t>& tokens, const hook_set<float>& h) {
    run_options<float> o;
    o.hooks = &h;
    return m.forward(tokens, o);
}

} // namespace

TEST_CASE("to_control_vector: block of the point, entries alpha * direction rounded as add_steering", "[steering]") {
    const steering_vector<float> post = direction_at("blocks.1.hook_resid_post", 32);
    const double alpha = 2.5;
    const control_vector cv = to_control_vector(post, alpha, "llama");
    REQUIRE(cv.directions.size() == 1);
    REQUIRE(cv.directions.count(1) == 1);
    CHECK(cv.model_hint == "llama");
    for (std::size_t k = 0; k < 32; ++k) CHECK(cv.directions.at(1)[k] == float(alpha) * post.direction(k));

    // blocks.2.hook_resid_pre is the output of block 1 as well.
    const control_vector pre = to_control_vector(direction_at("blocks.2.hook_resid_pre", 32), alpha);
    REQUIRE(pre.directions.count(1) == 1);
    CHECK(pre.directions.at(1) == cv.directions.at(1));
}

TEST_CASE("to_control_vector: steers like add_steering, also after save and load", "[steering]") {
    const transformer m = make_random_transformer<float>(tiny::llama(), 11);
    const std::vector<std::int32_t> tokens = {1, 7, 19, 3, 42, 5};
    const steering_vector<float> v = direction_at("blocks.1.hook_resid_post", m.config().d_model);
    const double alpha = 1.75;

    hook_set<float> steered;
    steering_options o;
    o.alpha = alpha;
    add_steering(steered, v, o);
    const tensor<float> expected = logits_with(m, tokens, steered);
    const tensor<float> plain = m.forward(tokens);

    const std::string path = (std::filesystem::temp_directory_path() / "actlens_test_to_control_vector.gguf").string();
    save_control_vector(path, to_control_vector(v, alpha));
    const control_vector loaded = load_control_vector(path);
    std::remove(path.c_str());
    hook_set<float> from_file;
    add_control_vector_hooks(from_file, loaded);
    const tensor<float> got = logits_with(m, tokens, from_file);

    REQUIRE(got.size() == expected.size());
    double moved = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        // The same float added at the same point; only contraction of the add into an FMA can differ.
        CHECK(got.data()[i] == Approx(expected.data()[i]).margin(1e-5));
        moved = std::max(moved, double(std::abs(expected.data()[i] - plain.data()[i])));
    }
    CHECK(moved > 1e-2); // the steering did change the logits
}

TEST_CASE("to_control_vector: points that are no block's output and bad values are refused", "[steering]") {
    require_error([] { to_control_vector(direction_at("blocks.1.hook_attn_out", 8), 1.0); }, errc::invalid_argument,
                  "blocks.1.hook_attn_out");
    require_error([] { to_control_vector(direction_at("blocks.0.hook_resid_pre", 8), 1.0); }, errc::invalid_argument,
                  "embedding");
    require_error([] { to_control_vector(direction_at("blocks.1.hook_resid_post", 8),
                                         std::numeric_limits<double>::infinity()); },
                  errc::non_finite, "alpha");
    steering_vector<float> empty;
    empty.point = hook_point::parse("blocks.1.hook_resid_post");
    require_error([&] { to_control_vector(empty, 1.0); }, errc::invalid_argument, "empty");
}
