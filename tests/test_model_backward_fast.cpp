// Tests of the backward pass's fast paths. (1) The same gradients on one thread and on several: its attention
// backward runs (row, key/value head) items on the OpenMP team once a layer's attention is large
// enough (B * H * T^2 * d_head >= 64 Ki), and its input-gradient products (kernels/gemm_input_grad)
// split columns across threads. The tiny models of the other backward tests stay below that size,
// so this uses a grouped-query Llama and a GPT-2 at T = 64, batch 2, every rule, and asks for the
// gradient at every hook point the backward can fill (including attn_v and attn_k, where the query
// heads of a group add up). Each item and each output element is summed in a fixed order, so the
// results must be bit-identical, not merely close. (2) backward_options::weights (transposed
// projections packed for the forward GEMM) gives the gradients of the in-place products, to float
// rounding, and is refused for another model.
#include <actlens/model/backward.hpp>
#include <actlens/model/backward_weights.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace actlens;

namespace {

template <class T>
activation_cache<T> gradients(const basic_transformer<T>& m, const std::vector<std::int32_t>& tokens, std::size_t B,
                              const backward_options& options, int threads = 2) {
#ifdef _OPENMP
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    const std::size_t S = tokens.size() / B;
    auto [logits, tape] = m.run_with_cache(tensor_view<const std::int32_t>(tokens.data(), {B, S}), "*");
    tensor<T> coef(logits.shape());
    for (std::size_t i = 0; i < coef.size(); ++i) coef.data()[i] = T(std::sin(0.37 * double(i)));
    const tensor<T> d_norm = unembed_backward(m, coef.view());
    std::vector<hook_point> want;
    for (const hook_point& p : m.hook_points())
        if (p.layer >= 0) want.push_back(p);
    auto out = backward(m, tape, d_norm.view(), want, options);
#ifdef _OPENMP
    omp_set_num_threads(keep);
#endif
    return out;
}

template <class T>
void check_same_on_threads(const model_config& config) {
    const auto m = make_random_transformer<T>(config, 5);
    const std::size_t B = 2, S = 64;
    std::vector<std::int32_t> tokens(B * S);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int32_t((i * 7 + 3) % config.vocab_size);
    backward_options relp, attnlrp, frozen;
    relp.rule = rule::relp;
    attnlrp.rule = rule::attnlrp;
    frozen.rule = rule::relp;
    frozen.freeze_attention = true;
    for (const backward_options& o : {backward_options{}, relp, attnlrp, frozen}) {
        const auto one = gradients(m, tokens, B, o, 1);
        const auto two = gradients(m, tokens, B, o, 2);
        REQUIRE(one.size() == two.size());
        REQUIRE(one.size() > 10);
        for (const auto& [point, g1] : one.entries()) {
            const tensor<T>& g2 = two.at(point);
            REQUIRE(g1.shape() == g2.shape());
            std::size_t differ = 0;
            for (std::size_t i = 0; i < g1.size(); ++i) differ += g1.data()[i] != g2.data()[i];
            INFO(point.name() << " rule " << int(o.rule) << " frozen " << o.freeze_attention);
            CHECK(differ == 0);
        }
    }
}

} // namespace

TEST_CASE("backward: one thread and two give bit-identical gradients", "[backward][threads]") {
    // Grouped-query Llama: 4 query heads over 2 key/value heads, d_head 16.
    const auto llama = model_config::llama(/*layers*/ 2, /*d*/ 64, /*heads*/ 4, /*kv heads*/ 2, /*d_mlp*/ 96,
                                           /*vocab*/ 50, /*ctx*/ 64);
    const auto gpt2 = model_config::gpt2(/*layers*/ 2, /*d*/ 64, /*heads*/ 4, /*vocab*/ 50, /*ctx*/ 64);
    SECTION("float") {
        check_same_on_threads<float>(llama);
        check_same_on_threads<float>(gpt2);
    }
    SECTION("double") { check_same_on_threads<double>(llama); }
}

TEST_CASE("backward: packed transposed weights give the gradients of the in-place products", "[backward]") {
    const auto llama = model_config::llama(2, 64, 4, 2, 96, 50, 64);
    const auto gpt2 = model_config::gpt2(2, 64, 4, 50, 64);
    for (const model_config& config : {llama, gpt2}) {
        INFO(config.family);
        const auto m = make_random_transformer<float>(config, 9);
        const backward_weights<float> bw(m);
        CHECK(bw.empty() == !kernels::detail::has_fast_sgemm);
        std::vector<std::int32_t> tokens(2 * 40);
        for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int32_t((i * 11 + 1) % config.vocab_size);
        backward_options plain, packed, relp_plain, relp_packed;
        packed.weights = &bw;
        relp_plain.rule = relp_packed.rule = rule::relp;
        relp_packed.weights = &bw;
        for (const auto& pair : {std::make_pair(plain, packed), std::make_pair(relp_plain, relp_packed)}) {
            const auto a = gradients(m, tokens, 2, pair.first);
            const auto b = gradients(m, tokens, 2, pair.second);
            REQUIRE(a.size() == b.size());
            for (const auto& [point, ga] : a.entries()) {
                const tensor<float>& gb = b.at(point);
                double scale = 0, worst = 0;
                for (std::size_t i = 0; i < ga.size(); ++i) {
                    scale = std::max(scale, double(std::abs(ga.data()[i])));
                    worst = std::max(worst, double(std::abs(ga.data()[i] - gb.data()[i])));
                }
                INFO(point.name());
                CHECK(scale > 0);
                CHECK(worst <= 1e-4 * scale); // float sums of a few hundred terms, in another order
            }
        }
        // Weights of another model are refused.
        const auto other = make_random_transformer<float>(config, 10);
        const backward_weights<float> other_bw(other);
        if (!other_bw.empty()) {
            backward_options wrong;
            wrong.weights = &other_bw;
            CHECK_THROWS_WITH(gradients(m, tokens, 2, wrong), Catch::Contains("another model"));
        }
    }
}

TEST_CASE("backward_weights know their model by its packed storage, not its address", "[backward]") {
    const auto config = model_config::llama(2, 32, 4, 2, 40, 50, 16);
    std::vector<std::int32_t> tokens(2 * 8);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int32_t((i * 7 + 2) % config.vocab_size);
    std::optional<transformer> slot;
    slot.emplace(make_random_transformer<float>(config, 3));
    const backward_weights<float> bw(*slot);
    REQUIRE_FALSE(bw.empty());
    backward_options with_bw;
    with_bw.weights = &bw;
    // A moved model is the same model at another address: its weights stay valid.
    const transformer moved = std::move(*slot);
    CHECK(bw.made_from(moved));
    const auto expected = gradients(moved, tokens, 2, backward_options{});
    const auto got = gradients(moved, tokens, 2, with_bw);
    for (const auto& [point, g] : expected.entries()) {
        INFO(point.name());
        const tensor<float>& h = got.at(point);
        double worst = 0, scale = 0;
        for (std::size_t i = 0; i < g.size(); ++i) {
            scale = std::max(scale, double(std::abs(g.data()[i])));
            worst = std::max(worst, double(std::abs(g.data()[i] - h.data()[i])));
        }
        CHECK(worst <= 1e-4 * scale);
    }
    // Another model built in the very place of the first (same address) is refused.
    slot.emplace(make_random_transformer<float>(config, 4));
    CHECK_FALSE(bw.made_from(*slot));
    CHECK_THROWS_WITH(gradients(*slot, tokens, 2, with_bw), Catch::Contains("another model"));
}

TEST_CASE("backward: a cut branch gives the gradients of its output projection zeroed", "[backward][atp_star]") {
    // GradDrop's edges: the reference is the old construction, a model whose W_O (layer 0) and
    // W_out (layer 1) are zero, differentiated on the original model's tape.
    const auto llama = model_config::llama(2, 32, 4, 2, 40, 50, 16);
    const auto gpt2 = model_config::gpt2(2, 24, 4, 50, 16);
    for (const model_config& config : {llama, gpt2}) {
        const auto m = make_random_transformer<double>(config, 8);
        const std::size_t B = 2, S = 8;
        std::vector<std::int32_t> tokens(B * S);
        for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int32_t((i * 5 + 1) % config.vocab_size);
        auto [logits, tape] = m.run_with_cache(tensor_view<const std::int32_t>(tokens.data(), {B, S}), "*");
        tensor<double> coef(logits.shape());
        for (std::size_t i = 0; i < coef.size(); ++i) coef.data()[i] = std::cos(0.21 * double(i));
        const tensor<double> d_norm = unembed_backward(m, coef.view());
        std::vector<hook_point> want;
        for (const hook_point& p : m.hook_points())
            if (p.layer >= 0) want.push_back(p);

        backward_options cut;
        cut.cut_attention = {0};
        cut.cut_mlp = {1};
        const auto with_cut = backward(m, tape, d_norm.view(), want, cut);
        model_weights<double> w = m.weights();
        w.layers[0].w_o = w.own(tensor<double>(w.layers[0].w_o.shape()));
        w.layers[1].w_out = w.own(tensor<double>(w.layers[1].w_out.shape()));
        const basic_transformer<double> zeroed(config, std::move(w));
        const auto reference = backward(zeroed, tape, d_norm.view(), want);
        const auto uncut = backward(m, tape, d_norm.view(), want);

        REQUIRE(with_cut.size() == reference.size());
        for (const auto& [point, g] : with_cut.entries()) {
            const tensor<double>& r = reference.at(point);
            REQUIRE(g.shape() == r.shape());
            double worst = 0;
            for (std::size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g.data()[i] - r.data()[i]));
            INFO(point.name());
            CHECK(worst == 0);
        }
        auto largest = [](const tensor<double>& t) {
            double m = 0;
            for (double x : t) m = std::max(m, std::abs(x));
            return m;
        };
        CHECK(largest(with_cut.at(hook_point{site::attn_z, 0})) == 0);
        CHECK(largest(with_cut.at(hook_point{site::mlp_post, 1})) == 0);
        CHECK(largest(uncut.at(hook_point{site::attn_z, 0})) > 1e-6);
        // The cut changes what reaches the bottom of the model.
        const tensor<double>& a = with_cut.at(hook_point{site::resid_pre, 0});
        const tensor<double>& b = uncut.at(hook_point{site::resid_pre, 0});
        double moved = 0;
        for (std::size_t i = 0; i < a.size(); ++i) moved = std::max(moved, std::abs(a.data()[i] - b.data()[i]));
        CHECK(moved > 1e-6);
    }
}
