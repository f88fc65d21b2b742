#include "tiny_models.hpp"

#include <actlens/model/backward.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace actlens;

namespace {

// M = sum_{b,t,v} coef[b,t,v] * logits[b,t,v]: a fixed linear read-out of the logits, so that
// dM/dlogits = coef and every non-linearity upstream is exercised.
struct linear_metric {
    tensor<double> coef;
    double operator()(const tensor<double>& logits) const {
        double m = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) m += coef.data()[i] * logits.data()[i];
        return m;
    }
};

} // namespace

TEST_CASE("backward: gradients at every hook point equal central finite differences", "[backward]") {
    for (const auto& named : tiny::all()) {
        const std::string& family = named.name;
        const model_config& config = named.config;
        SECTION(family) {
            const auto m = make_random_transformer<double>(config, 77);
            const std::size_t B = 2, S = 5;
            const auto toks = tiny::tokens(B * S, config.vocab_size, 3);
            const tensor_view<const std::int32_t> batch(toks.data(), {B, S});
            linear_metric metric{tensor<double>({B, S, config.vocab_size})};
            rng gen(5);
            for (double& x : metric.coef) x = gen.normal();

            auto [logits, tape] = m.run_with_cache(batch, "*");
            // With the logits, which a model that soft-caps them (Gemma 2) needs.
            const tensor<double> d_norm = unembed_backward(m, metric.coef.view(), logits.view());
            const auto points = m.hook_points();
            const activation_cache<double> grads = backward(m, tape, d_norm.view(), points);
            REQUIRE(grads.size() == points.size());

            // Central differences, perturbing one element of a hook point through a hook. With
            // h = 1e-5 the truncation error is O(h^2) ~ 1e-10 and rounding ~ 1e-16 |M| / h ~ 1e-10,
            // far inside the 1e-6 relative tolerance.
            const double h = 1e-5;
            std::size_t checked = 0;
            for (const hook_point& p : points) {
                const tensor<double>& g = grads.at(p);
                REQUIRE(g.shape() == tape.at(p).shape());
                double scale = 0;
                for (double x : g) scale = std::max(scale, std::abs(x));
                for (int trial = 0; trial < 4; ++trial) {
                    const std::size_t i = std::size_t(gen.next() % g.size());
                    if (std::isinf(tape.at(p).data()[i])) continue; // masked attention scores
                    auto perturbed = [&](double delta) {
                        hook_set<double> hooks;
                        hooks.add(p, [&](tensor_view<double> a, const hook_context&) { a.data()[i] += delta; });
                        run_options<double> o;
                        o.hooks = &hooks;
                        return metric(m.forward(batch, o));
                    };
                    const double fd = (perturbed(h) - perturbed(-h)) / (2 * h);
                    INFO(p.name() << " element " << i << " fd " << fd << " backward " << g.data()[i]);
                    CHECK(std::abs(fd - g.data()[i]) <= 1e-6 * std::max(std::abs(fd), 1e-2 * scale + 1e-12));
                    ++checked;
                }
            }
            CHECK(checked > points.size() * 3);
        }
    }
}

TEST_CASE("backward: down_to_layer stops early and needs only the upper tape", "[backward]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<double>(config, 8);
    const auto toks = tiny::tokens(6, config.vocab_size);
    auto [logits, full_tape] = m.run_with_cache(toks, "*");
    tensor<double> coef(logits.shape());
    for (std::size_t i = 0; i < coef.size(); ++i) coef.data()[i] = std::cos(double(i));
    const auto d_norm = unembed_backward(m, coef.view());
    const std::vector<hook_point> want{{site::resid_pre, 2}, {site::resid_pre, 1}};
    const auto full = backward(m, full_tape, d_norm.view(), want);

    activation_cache<double> small_tape;
    for (const hook_point& p : tape_points(m, 1)) small_tape.store(p, full_tape.at(p).view());
    CHECK(small_tape.size() < full_tape.size());
    const auto partial = backward(m, small_tape, d_norm.view(), want, {}, 1);
    for (const hook_point& p : want) {
        const auto& a = full.at(p);
        const auto& b = partial.at(p);
        for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a.data()[i] == b.data()[i]);
    }
    CHECK_THROWS_WITH(backward(m, small_tape, d_norm.view(), want, {}, 0), Catch::Contains("blocks.0"));
}
