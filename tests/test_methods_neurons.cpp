#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/methods/neurons.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numeric>

using namespace actlens;

namespace {

/// The full logit row of one neuron's weight vector, in double, straight from the definitions.
std::vector<double> brute_force_logits(const transformer& m, int layer, std::size_t i, neuron_side side, vocab_norm norm) {
    const model_config& c = m.config();
    const auto& w = m.weights();
    const auto& lw = w.layers[std::size_t(layer)];
    std::vector<double> x(c.d_model);
    for (std::size_t e = 0; e < c.d_model; ++e)
        x[e] = side == neuron_side::write ? lw.w_out(e, i) : side == neuron_side::read_up ? lw.w_in(i, e) : lw.w_gate(i, e);
    if (norm == vocab_norm::normed) {
        double mean = 0, ms = 0;
        if (c.norm == norm_kind::layer_norm) {
            for (double v : x) mean += v / double(c.d_model);
        }
        for (double v : x) ms += (v - mean) * (v - mean) / double(c.d_model);
        for (std::size_t e = 0; e < c.d_model; ++e) {
            x[e] = (x[e] - mean) / std::sqrt(ms + c.norm_eps) * w.final_norm_weight(e);
            if (c.norm == norm_kind::layer_norm) x[e] += w.final_norm_bias(e);
        }
    }
    std::vector<double> logits(c.vocab_size, 0.0);
    for (std::size_t v = 0; v < c.vocab_size; ++v)
        for (std::size_t e = 0; e < c.d_model; ++e) logits[v] += double(w.unembedding(v, e)) * x[e];
    // The model's unembedding includes its final soft cap (Gemma 2).
    if (const double cap = c.final_logit_softcap; cap > 0)
        for (double& l : logits) l = cap * std::tanh(l / cap);
    return logits;
}

} // namespace

TEST_CASE("decode_neurons: blockwise top-k equals a brute-force full-logit computation", "[neurons]") {
    for (const auto& named : tiny::all()) {
        SECTION(named.name) {
            const model_config& c = named.config;
            const auto m = make_random_transformer<float>(c, 17);
            std::vector<neuron_side> sides{neuron_side::write, neuron_side::read_up};
            if (c.gated_mlp()) sides.push_back(neuron_side::read_gate);
            for (neuron_side side : sides)
                for (vocab_norm norm : {vocab_norm::raw, vocab_norm::normed}) {
                    neuron_decode_options o;
                    o.top_k = 5;
                    o.side = side;
                    o.norm = norm;
                    o.block_neurons = 7; // blocks with a remainder
                    std::size_t last_done = 0;
                    o.on_progress = [&](std::size_t done, std::size_t total) {
                        CHECK(done > last_done);
                        CHECK(total == c.n_layers * c.d_mlp);
                        last_done = done;
                    };
                    const neuron_decoding dec = decode_neurons(m, o);
                    CHECK(last_done == c.n_layers * c.d_mlp);
                    REQUIRE(dec.tokens.shape() == shape_t{c.n_layers, c.d_mlp, 5});
                    for (std::size_t l = 0; l < c.n_layers; ++l)
                        for (std::size_t i = 0; i < c.d_mlp; ++i) {
                            const std::vector<double> logits = brute_force_logits(m, int(l), i, side, norm);
                            std::vector<std::size_t> order(logits.size());
                            std::iota(order.begin(), order.end(), std::size_t(0));
                            std::sort(order.begin(), order.end(),
                                      [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
                            const double max = logits[order[0]];
                            double sum = 0;
                            for (double v : logits) sum += std::exp(v - max);
                            const auto got = dec.neuron(l, i);
                            INFO("side " << int(side) << " norm " << int(norm) << " layer " << l << " neuron " << i);
                            for (std::size_t r = 0; r < 5; ++r) {
                                // Ranks agree unless two logits are within float rounding of each other.
                                if (r + 1 < logits.size() && logits[order[r]] - logits[order[r + 1]] > 1e-4 &&
                                    (r == 0 || logits[order[r - 1]] - logits[order[r]] > 1e-4))
                                    CHECK(got[r].token == std::int32_t(order[r]));
                                CHECK(got[r].logit == Approx(logits[order[r]]).margin(1e-4));
                                CHECK(got[r].probability == Approx(std::exp(logits[order[r]] - max) / sum).margin(1e-6));
                            }
                        }
                }
        }
    }
}

TEST_CASE("decode_neurons: selected layers, and decode_direction of a neuron's column", "[neurons]") {
    const auto c = tiny::llama();
    const auto m = make_random_transformer<float>(c, 2);
    neuron_decode_options o;
    o.layers = {2, 0};
    o.top_k = 4;
    const neuron_decoding dec = decode_neurons(m, o); // default block size: one block per layer here
    CHECK(dec.layers == std::vector<int>{2, 0});
    tensor<float> column({c.d_model});
    for (std::size_t e = 0; e < c.d_model; ++e) column(e) = m.weights().layers[0].w_out(e, 11);
    const auto direct = decode_direction(m, column.view(), 4);
    const auto row = dec.neuron(1, 11);
    for (std::size_t r = 0; r < 4; ++r) {
        CHECK(direct[r].token == row[r].token);
        CHECK(direct[r].logit == Approx(row[r].logit).margin(1e-5));
    }
}

TEST_CASE("neuron clamps: the hook sets or scales the neuron at every position", "[neurons]") {
    for (const auto& named : tiny::all()) {
        SECTION(named.name) {
            const model_config& c = named.config;
            const auto m = make_random_transformer<float>(c, 9);
            const auto tokens = tiny::tokens(7, c.vocab_size, 4);
            const std::string post = "blocks.1.mlp.hook_post";
            const std::string up = c.gated_mlp() ? "blocks.1.mlp.hook_pre_linear" : "blocks.1.mlp.hook_pre";
            const auto [clean_logits, clean] = m.run_with_cache(tokens, "blocks.1.mlp.*");

            hook_set<float> clamp;
            add_neuron_clamp(clamp, m, 1, 5, 4.5f);
            run_options<float> run;
            run.hooks = &clamp;
            const auto [clamped_logits, clamped] = m.run_with_cache(tokens, "blocks.1.mlp.*", run);
            for (std::size_t t = 0; t < tokens.size(); ++t)
                for (std::size_t i = 0; i < c.d_mlp; ++i)
                    CHECK(clamped[post](0, t, i) == (i == 5 ? 4.5f : clean[post](0, t, i)));
            double change = 0;
            for (std::size_t i = 0; i < clean_logits.size(); ++i)
                change = std::max(change, double(std::fabs(clean_logits.data()[i] - clamped_logits.data()[i])));
            CHECK(change > 1e-4);

            hook_set<float> scale;
            add_neuron_scale(scale, m, 1, 3, -2.0f);
            run.hooks = &scale;
            const auto [scaled_logits, scaled] = m.run_with_cache(tokens, "blocks.1.mlp.*", run);
            for (std::size_t t = 0; t < tokens.size(); ++t) CHECK(scaled[post](0, t, 3) == -2.0f * clean[post](0, t, 3));

            // On the up projection: the activation downstream follows from the clamped value.
            hook_set<float> clamp_up;
            add_neuron_clamp(clamp_up, m, 1, 6, 0.75f, clamp_site::up);
            run.hooks = &clamp_up;
            const auto [up_logits, up_cache] = m.run_with_cache(tokens, "blocks.1.mlp.*", run);
            for (std::size_t t = 0; t < tokens.size(); ++t) {
                CHECK(up_cache[up](0, t, 6) == 0.75f);
                auto gelu = [&](double x) {
                    return c.mlp == mlp_kind::gelu_erf
                               ? 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)))
                               : 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
                };
                if (c.gated_mlp()) { // silu(gate) * up (SwiGLU) or gelu_tanh(gate) * up (GeGLU)
                    const double g = clean["blocks.1.mlp.hook_pre"](0, t, 6);
                    const double act = c.mlp == mlp_kind::swiglu ? g / (1 + std::exp(-g)) : gelu(g);
                    CHECK(up_cache[post](0, t, 6) == Approx(act * 0.75).margin(1e-5));
                } else {
                    CHECK(up_cache[post](0, t, 6) == Approx(gelu(0.75)).margin(1e-5));
                }
            }
        }
    }
}

TEST_CASE("neurons: bad arguments give clear errors", "[neurons]") {
    const auto m = make_random_transformer<float>(tiny::gpt2(), 1);
    hook_set<float> h;
    require_error([&] { add_neuron_clamp(h, m, 3, 0, 1.0f); }, errc::bad_layer_range);
    require_error([&] { add_neuron_clamp(h, m, -1, 0, 1.0f); }, errc::bad_layer_range);
    require_error([&] { add_neuron_clamp(h, m, 0, m.config().d_mlp, 1.0f); }, errc::out_of_range);
    require_error([&] { add_neuron_clamp(h, m, 0, 0, std::numeric_limits<float>::quiet_NaN()); }, errc::non_finite);
    require_error([&] { add_neuron_scale(h, m, 0, 0, std::numeric_limits<float>::infinity()); }, errc::non_finite);
    CHECK(h.empty());
    neuron_decode_options o;
    o.top_k = 0;
    require_error([&] { decode_neurons(m, o); }, errc::invalid_argument);
    o.top_k = m.config().vocab_size + 1;
    require_error([&] { decode_neurons(m, o); }, errc::invalid_argument);
    o.top_k = 3;
    o.side = neuron_side::read_gate; // GPT-2 has no gate
    require_error([&] { decode_neurons(m, o); }, errc::invalid_argument);
    o.side = neuron_side::write;
    o.layers = {0, 5};
    require_error([&] { decode_neurons(m, o); }, errc::bad_layer_range);
    tensor<float> wrong({m.config().d_model + 1});
    require_error([&] { decode_direction(m, wrong.view(), 3); }, errc::shape_mismatch);
}
