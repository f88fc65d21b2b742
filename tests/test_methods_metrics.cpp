#include "tiny_models.hpp"

#include <actlens/methods/metrics.hpp>
#include <actlens/model/backward.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace actlens;

namespace {

// Central differences of metric.value over every logit entry the metric reads.
template <class Metric>
void check_logits_gradient(const Metric& metric, tensor<double> logits) {
    tensor<double> grad(logits.shape());
    metric.logits_gradient(tensor_view<const double>(logits.view()), grad.view());
    const double h = 1e-6;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const double saved = logits.data()[i];
        logits.data()[i] = saved + h;
        const double up = metric.value(tensor_view<const double>(logits.view()));
        logits.data()[i] = saved - h;
        const double down = metric.value(tensor_view<const double>(logits.view()));
        logits.data()[i] = saved;
        REQUIRE(grad.data()[i] == Approx((up - down) / (2 * h)).margin(1e-8));
    }
}

tensor<double> random_logits(std::size_t B, std::size_t T, std::size_t V, std::uint64_t seed) {
    tensor<double> l({B, T, V});
    rng g(seed);
    for (double& x : l) x = 2 * g.normal();
    return l;
}

} // namespace

TEST_CASE("metrics: values are what the definitions give, gradients match finite differences", "[metrics]") {
    const auto logits = random_logits(3, 4, 7, 1);
    const tensor_view<const double> lv = logits.view();

    logit_difference ld{{1, 2, 3}, {4, 5, 6}};
    double expect = 0;
    for (std::size_t b = 0; b < 3; ++b) expect += (logits(b, 3, b + 1) - logits(b, 3, b + 4)) / 3;
    CHECK(ld.value(lv) == Approx(expect).epsilon(1e-14));
    check_logits_gradient(ld, logits);
    ld.position = 1;
    check_logits_gradient(ld, logits);

    token_log_prob lp{{0, 3, 6}};
    double lp_expect = 0;
    for (std::size_t b = 0; b < 3; ++b) {
        double z = 0;
        for (std::size_t v = 0; v < 7; ++v) z += std::exp(logits(b, 3, v));
        lp_expect += std::log(std::exp(logits(b, 3, b * 3)) / z) / 3;
    }
    CHECK(lp.value(lv) == Approx(lp_expect).epsilon(1e-12));
    check_logits_gradient(lp, logits);
    lp.probability = true;
    check_logits_gradient(lp, logits);

    const auto other = random_logits(3, 4, 7, 2);
    const auto kl = kl_divergence::to(tensor_view<const double>(other.view()));
    CHECK(kl.value(tensor_view<const double>(other.view())) == Approx(0).margin(1e-14));
    CHECK(kl.value(lv) > 0);
    check_logits_gradient(kl, logits);

    const auto norm = normalize(logit_difference{{1, 2, 3}, {4, 5, 6}}, 2.5, -1.0);
    CHECK(norm.value(lv) == Approx((expect + 1.0) / 3.5).epsilon(1e-12));
    check_logits_gradient(norm, logits);
}

TEST_CASE("metrics: the logit difference's gradient at the final norm needs no vocabulary product", "[metrics]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<double>(config, 3);
    const logit_difference ld{{5, 9}, {11, 2}};
    tensor<double> d_logits({2, 4, config.vocab_size});
    const auto logits = m.forward(tensor_view<const std::int32_t>(tiny::tokens(8, config.vocab_size).data(), {2, 4}));
    ld.logits_gradient(tensor_view<const double>(logits.view()), d_logits.view());
    const auto via_vocab = unembed_backward(m, d_logits.view());
    const auto direct = ld.normalized_gradient(m, 2, 4);
    for (std::size_t i = 0; i < direct.size(); ++i) CHECK(direct.data()[i] == Approx(via_vocab.data()[i]).margin(1e-14));
}

TEST_CASE("metrics: bad arguments are named", "[metrics][errors]") {
    const auto logits = random_logits(2, 3, 5, 1);
    const tensor_view<const double> lv = logits.view();
    CHECK_THROWS_WITH((logit_difference{{1}, {2}}.value(lv)), Catch::Contains("1 entries for a batch of 2"));
    CHECK_THROWS_WITH((logit_difference{{1, 9}, {2, 3}}.value(lv)), Catch::Contains("token 9 of row 1"));
    CHECK_THROWS_WITH((logit_difference{{1, 1}, {2, 3}, 3}.value(lv)), Catch::Contains("position 3"));
    CHECK_THROWS_WITH(normalize(logit_difference{{1, 1}, {2, 3}}, 1.0, 1.0).value(lv), Catch::Contains("must differ"));
}
