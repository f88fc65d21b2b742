// Tests of AtP* (methods/atp_star.hpp): the QK fix against the pattern recomputed by a patched
// forward, its advantage over plain AtP under saturated attention, GradDrop against finite
// differences with the dropped block frozen, and argument checks.
#include "tiny_models.hpp"

#include <actlens/methods/atp_star.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>

using namespace actlens;

namespace {

// Two rows of six tokens; the corrupted rows differ at positions 1 and 4 (row 0) and 2 (row 1).
tiny::run_pair three_edited_tokens(std::size_t vocab) {
    tiny::run_pair r;
    r.clean = tiny::tokens(12, vocab, 1);
    r.corrupted = r.clean;
    for (std::size_t i : {1, 4, 6 + 2})
        r.corrupted[i] = (r.corrupted[i] + 5) % std::int32_t(vocab);
    return r;
}

// A random model whose query weights are multiplied by `factor`: larger logits, a sharper softmax.
basic_transformer<double> scaled_queries(const model_config& c, std::uint64_t seed, double factor) {
    model_weights<double> w = make_random_weights<double>(c, seed);
    for (auto& lw : w.layers) {
        tensor<double> q(lw.w_q.shape());
        for (std::size_t i = 0; i < q.size(); ++i)
            q.data()[i] = factor * lw.w_q.data()[i];
        lw.w_q = w.own(std::move(q));
    }
    return basic_transformer<double>(c, std::move(w));
}

// The activations at `points` of a run with optional extra hooks (which run first).
activation_cache<double> capture(const basic_transformer<double>& m,
                                 tensor_view<const std::int32_t> tokens,
                                 const std::vector<hook_point>& points,
                                 const hook_set<double>* extra = nullptr) {
    activation_cache<double> cache;
    hook_set<double> hooks;
    if (extra) hooks.merge(*extra);
    cache.capture_into(hooks, points);
    run_options<double> o;
    o.hooks = &hooks;
    m.forward(tokens, o);
    return cache;
}

struct base_run {
    activation_cache<double> tape, grads;
};

// The base run's tape and the metric's gradients at `want` (the library's backward pass).
base_run base_gradients(const basic_transformer<double>& m, tensor_view<const std::int32_t> tokens,
                        const logit_difference& metric, const std::vector<hook_point>& want) {
    base_run r;
    hook_set<double> record;
    r.tape.capture_into(record, tape_points(m));
    run_options<double> o;
    o.hooks = &record;
    const tensor<double> logits = m.forward(tokens, o);
    tensor<double> d_logits(logits.shape());
    metric.logits_gradient(logits.view(), d_logits.view());
    const tensor<double> d_norm = unembed_backward(m, d_logits.view());
    r.grads = backward(m, r.tape, d_norm.view(), want);
    return r;
}

// A hook that overwrites position t of every row and head of a [B, T, H, d_h] activation with
// `src`.
hook_fn<double> overwrite_position(const tensor<double>& src, std::size_t t) {
    return [&src, t](tensor_view<double> a, const hook_context&) {
        for (std::size_t b = 0; b < a.extent(0); ++b)
            for (std::size_t j = 0; j < a.extent(2); ++j)
                for (std::size_t e = 0; e < a.extent(3); ++e)
                    a(b, t, j, e) = src(b, t, j, e);
    };
}

// sum over rows of sum_{i,u} (A'(b,h,i,u) - A(b,h,i,u)) G(b,h,i,u), by plain loops.
double pattern_change_times_gradient(const tensor<double>& after, const tensor<double>& before,
                                     const tensor<double>& grad, std::size_t h) {
    double sum = 0;
    for (std::size_t b = 0; b < after.extent(0); ++b)
        for (std::size_t i = 0; i < after.extent(2); ++i)
            for (std::size_t u = 0; u < after.extent(3); ++u)
                sum += (after(b, h, i, u) - before(b, h, i, u)) * grad(b, h, i, u);
    return sum;
}

} // namespace

TEST_CASE("atp_star: query and key terms equal the brute-force pattern change times dM/dA",
          "[atp_star]") {
    struct setting {
        model_config config;
        double query_scale;
        patch_direction direction;
    };
    // Moderate and saturated softmax (x12 keeps exp() of the logits differences far from 1).
    for (const setting& c : {setting{tiny::gpt2(), 3.0, patch_direction::denoising},
                             setting{tiny::llama(), 3.0, patch_direction::denoising},
                             setting{tiny::gpt2(), 12.0, patch_direction::noising},
                             setting{tiny::llama(), 12.0, patch_direction::noising}}) {
        const model_config& config = c.config;
        const auto m = scaled_queries(config, 5, c.query_scale);
        const auto runs = three_edited_tokens(config.vocab_size);
        const logit_difference ld{{1, 2}, {3, 4}};
        atp_star_options so;
        so.direction = c.direction;
        const auto r = atp_star(m, runs.cv(), runs.xv(), ld, so);
        const bool denoise = c.direction == patch_direction::denoising;
        const auto base_tokens = denoise ? runs.xv() : runs.cv();
        const auto patch_tokens = denoise ? runs.cv() : runs.xv();
        const std::size_t L = config.n_layers, S = 6, H = config.n_heads,
                          group = config.group_size();
        std::vector<hook_point> want, patch_points;
        for (int l = 0; l < int(L); ++l) {
            want.push_back({site::attn_pattern, l});
            want.push_back({site::attn_v, l});
            for (site s : {site::attn_q, site::attn_k, site::attn_v})
                patch_points.push_back({s, l});
        }
        const base_run base = base_gradients(m, base_tokens, ld, want);
        const activation_cache<double> patch = capture(m, patch_tokens, patch_points);
        double largest_query = 0, largest_key = 0;
        for (int l = 0; l < int(L); ++l) {
            const tensor<double>& A = base.tape.at({site::attn_pattern, l});
            const tensor<double>& G = base.grads.at({site::attn_pattern, l});
            for (std::size_t t = 0; t < S; ++t) {
                // Patch the queries (then the keys) of every head at position t, before RoPE, and
                // read the recomputed pattern: a head's pattern depends on its own q and k only.
                for (site s : {site::attn_q, site::attn_k}) {
                    hook_set<double> patch_hooks;
                    patch_hooks.add({s, l}, overwrite_position(patch.at({s, l}), t));
                    const auto after =
                        capture(m, base_tokens, {{site::attn_pattern, l}}, &patch_hooks);
                    for (std::size_t h = 0; h < H; ++h) {
                        const double brute = pattern_change_times_gradient(
                            after.at({site::attn_pattern, l}), A, G, h);
                        const double estimate =
                            s == site::attn_q ? r.query(l, t, h) : r.key(l, t, h);
                        INFO(config.family << " x" << c.query_scale << " layer " << l
                                           << " position " << t << " head " << h);
                        CHECK(estimate == Approx(brute).epsilon(1e-9).margin(1e-12));
                        double& largest = s == site::attn_q ? largest_query : largest_key;
                        largest = std::max(largest, std::abs(brute));
                    }
                }
                // Values: plain AtP, (v' - v) . dM/dv; a shared key/value head is the sum of its
                // heads.
                const tensor<double>& dv = base.grads.at({site::attn_v, l});
                const tensor<double>& v = base.tape.at({site::attn_v, l});
                const tensor<double>& pv = patch.at({site::attn_v, l});
                for (std::size_t g = 0; g < config.n_kv_heads; ++g) {
                    double brute = 0, estimate = 0;
                    for (std::size_t b = 0; b < 2; ++b)
                        for (std::size_t e = 0; e < config.d_head; ++e)
                            brute += (pv(b, t, g, e) - v(b, t, g, e)) * dv(b, t, g, e);
                    for (std::size_t h = g * group; h < (g + 1) * group; ++h)
                        estimate += r.value(l, t, h);
                    CHECK(estimate == Approx(brute).epsilon(1e-9).margin(1e-12));
                }
            }
            // The whole head: every query and key patched, then the pattern change times dM/dA plus
            // the head's value nodes.
            hook_set<double> head_hooks;
            for (site s : {site::attn_q, site::attn_k})
                for (std::size_t t = 0; t < S; ++t)
                    head_hooks.add({s, l}, overwrite_position(patch.at({s, l}), t));
            const auto after = capture(m, base_tokens, {{site::attn_pattern, l}}, &head_hooks);
            for (std::size_t h = 0; h < H; ++h) {
                double brute =
                    pattern_change_times_gradient(after.at({site::attn_pattern, l}), A, G, h);
                for (std::size_t t = 0; t < S; ++t)
                    brute += r.value(l, t, h);
                CHECK(r.scores(l, h) == Approx(brute).epsilon(1e-9).margin(1e-12));
            }
        }
        // The comparison is not vacuous: patched queries and keys move the patterns.
        CHECK(largest_query > 1e-3);
        CHECK(largest_key > 1e-3);
        CHECK(r.grad_drop_scores.size() == 0);
    }
}

TEST_CASE("atp_star: under saturated attention AtP* is closer to activation patching than AtP",
          "[atp_star]") {
    // One layer: the head's own softmax is the only saturated step, and the fix must win by a wide
    // margin on queries and keys. Three layers: saturated softmaxes downstream too, which neither
    // method linearises well; AtP* must still be closer.
    for (const std::size_t layers : {1, 3}) {
        const double node_margin = layers == 1 ? 0.25 : 1.0;
        const auto config = model_config::gpt2(layers, 24, 4, 50, 32);
        const auto m = scaled_queries(config, 5, 12.0);
        auto runs = three_edited_tokens(config.vocab_size);
        // A changed last token: a changed last query, seen even with one layer.
        runs.corrupted[11] = (runs.corrupted[11] + 5) % 50;
        const logit_difference ld{{1, 2}, {3, 4}};
        const std::size_t L = config.n_layers, H = config.n_heads, S = 6, dh = config.d_head;
        std::vector<hook_point> nodes;
        for (int l = 0; l < int(L); ++l)
            for (site s : {site::attn_q, site::attn_k, site::attn_v})
                nodes.push_back({s, l});
        for (auto direction : {patch_direction::denoising, patch_direction::noising}) {
            const bool denoise = direction == patch_direction::denoising;
            const auto base_tokens = denoise ? runs.xv() : runs.cv();
            const auto patch_tokens = denoise ? runs.cv() : runs.xv();
            const base_run base = base_gradients(m, base_tokens, ld, nodes);
            const activation_cache<double> patch = capture(m, patch_tokens, nodes);
            const double base_value = ld.value(m.forward(base_tokens));
            // The softmax is saturated: on average a row puts more than 90% on one key.
            double top = 0, rows = 0;
            for (int l = 0; l < int(L); ++l) {
                const tensor<double>& A = base.tape.at({site::attn_pattern, l});
                for (std::size_t b = 0; b < 2; ++b)
                    for (std::size_t h = 0; h < H; ++h)
                        for (std::size_t t = 1; t < S; ++t) {
                            double mx = 0;
                            for (std::size_t u = 0; u <= t; ++u)
                                mx = std::max(mx, A(b, h, t, u));
                            top += mx;
                            rows += 1;
                        }
            }
            CHECK(top / rows > 0.9);
            atp_star_options so;
            so.direction = direction;
            const auto star = atp_star(m, runs.cv(), runs.xv(), ld, so);

            // Plain AtP of head h's entries of one site, at one position (or all with t = S).
            auto plain_atp = [&](site s, int l, std::size_t h, std::size_t t) {
                const tensor<double>& grad = base.grads.at({s, l});
                const tensor<double>& after = patch.at({s, l});
                const tensor<double>& before = base.tape.at({s, l});
                double sum = 0;
                for (std::size_t b = 0; b < 2; ++b)
                    for (std::size_t i = 0; i < S; ++i)
                        if (t == S || i == t)
                            for (std::size_t e = 0; e < dh; ++e)
                                sum += (after(b, i, h, e) - before(b, i, h, e)) * grad(b, i, h, e);
                return sum;
            };
            // Activation patching of head h's entries of one site, at one position (or all with t =
            // S).
            auto patched_effect = [&](site s, int l, std::size_t h, std::size_t t) {
                const tensor<double>& src = patch.at({s, l});
                hook_set<double> hooks;
                hooks.add({s, l}, [&](tensor_view<double> a, const hook_context&) {
                    for (std::size_t b = 0; b < 2; ++b)
                        for (std::size_t i = 0; i < S; ++i)
                            if (t == S || i == t)
                                for (std::size_t e = 0; e < dh; ++e)
                                    a(b, i, h, e) = src(b, i, h, e);
                });
                run_options<double> o;
                o.hooks = &hooks;
                return ld.value(m.forward(base_tokens, o)) - base_value;
            };

            // Nodes: all queries of a head (rows move independently), and one key at a time.
            double query_star = 0, query_plain = 0, key_star = 0, key_plain = 0;
            for (int l = 0; l < int(L); ++l)
                for (std::size_t h = 0; h < H; ++h) {
                    double star_q = 0;
                    for (std::size_t t = 0; t < S; ++t)
                        star_q += star.query(l, t, h);
                    const double truth_q = patched_effect(site::attn_q, l, h, S);
                    query_star += std::abs(star_q - truth_q);
                    query_plain += std::abs(plain_atp(site::attn_q, l, h, S) - truth_q);
                    for (std::size_t u = 0; u < S; ++u) {
                        const double truth_k = patched_effect(site::attn_k, l, h, u);
                        key_star += std::abs(star.key(l, u, h) - truth_k);
                        key_plain += std::abs(plain_atp(site::attn_k, l, h, u) - truth_k);
                    }
                }
            // Heads: activation_patch(head) against the whole-head estimates.
            patching_options po;
            po.direction = direction;
            const auto truth =
                activation_patch(m, runs.cv(), runs.xv(), ld, patch_target::head, po);
            double head_star = 0, head_plain = 0;
            for (int l = 0; l < int(L); ++l)
                for (std::size_t h = 0; h < H; ++h) {
                    const double effect = truth.scores(l, h) - base_value;
                    double plain = 0;
                    for (site s : {site::attn_q, site::attn_k, site::attn_v})
                        plain += plain_atp(s, l, h, S);
                    head_star += std::abs(star.scores(l, h) - effect);
                    head_plain += std::abs(plain - effect);
                }
            INFO(layers << " layers, " << (denoise ? "denoising" : "noising")
                        << ": summed |error| of AtP* vs AtP: queries " << query_star << " vs "
                        << query_plain << ", keys " << key_star << " vs " << key_plain << ", heads "
                        << head_star << " vs " << head_plain);
            CHECK(query_star < node_margin * query_plain);
            CHECK(key_star < node_margin * key_plain);
            CHECK(head_star < head_plain);
            if (std::getenv("ACTLENS_ATP_STAR_REPORT"))
                WARN(layers << " layers, " << (denoise ? "denoising" : "noising") << ": queries "
                            << query_star << " vs " << query_plain << ", keys " << key_star
                            << " vs " << key_plain << ", heads " << head_star << " vs "
                            << head_plain);
        }
    }
}

namespace {

// d/dalpha at 0 of the metric of `tokens`, with `perturb(alpha)` hooks and blocks.1's outputs in
// `frozen` overwritten by `values` (the base run's): the gradient with those edges dropped.
template <class MakeHooks>
double frozen_derivative(const basic_transformer<double>& m, tensor_view<const std::int32_t> tokens,
                         const logit_difference& metric, const activation_cache<double>& values,
                         const std::vector<hook_point>& frozen, const MakeHooks& perturb) {
    auto at = [&](double alpha) {
        hook_set<double> hooks = perturb(alpha);
        for (const hook_point& p : frozen) {
            const tensor<double>& v = values.at(p);
            hooks.add(p, [&v](tensor_view<double> a, const hook_context&) {
                std::copy(v.data(), v.data() + v.size(), a.data());
            });
        }
        run_options<double> o;
        o.hooks = &hooks;
        return metric.value(m.forward(tokens, o));
    };
    const double eps = 1e-5;
    return (at(eps) - at(-eps)) / (2 * eps);
}

// Hooks adding alpha * (after - before) to head h's entries at a point ([B, H, T, T] pattern, or
// [B, T, H, d_h] when `head_axis` is 2), at one position t of axis 1 (or all with t = npos).
hook_set<double> add_scaled_change(const hook_point& p, const tensor<double>& after,
                                   const tensor<double>& before, std::size_t h,
                                   std::size_t head_axis, std::size_t t, double alpha) {
    hook_set<double> hooks;
    hooks.add(
        p, [&after, &before, h, head_axis, t, alpha](tensor_view<double> a, const hook_context&) {
            for (std::size_t b = 0; b < a.extent(0); ++b)
                for (std::size_t i = 0; i < a.extent(head_axis == 1 ? 2 : 1); ++i)
                    for (std::size_t e = 0; e < a.extent(3); ++e) {
                        if (head_axis == 2 && t != std::size_t(-1) && i != t) continue;
                        if (head_axis == 1)
                            a(b, h, i, e) += alpha * (after(b, h, i, e) - before(b, h, i, e));
                        else
                            a(b, i, h, e) += alpha * (after(b, i, h, e) - before(b, i, h, e));
                    }
        });
    return hooks;
}

} // namespace

TEST_CASE("atp_star: GradDrop equals the estimates with the dropped edges frozen", "[atp_star]") {
    const auto config = model_config::gpt2(2, 24, 4, 50, 32);
    const auto m = scaled_queries(config, 9, 3.0);
    const auto runs = three_edited_tokens(config.vocab_size);
    const logit_difference ld{{1, 2}, {3, 4}};
    const std::size_t S = 6, H = config.n_heads;
    atp_star_options o;
    o.grad_drop = true;
    const auto r = atp_star(m, runs.cv(), runs.xv(), ld, o); // denoising, block edges: E = 2
    o.edge = grad_drop_edge::sublayer;
    const auto rs = atp_star(m, runs.cv(), runs.xv(), ld, o); // E = 4
    auto approx = [](double x) { return Approx(x).epsilon(1e-6).margin(1e-8); };

    // The last layer's nodes keep their gradients when a block below is dropped and lose them when
    // their own is: 1/(E-1) sum_e |c_e| = |c|.
    for (std::size_t h = 0; h < H; ++h) {
        CHECK(r.grad_drop_scores(1, h) ==
              Approx(std::abs(r.scores(1, h))).epsilon(1e-12).margin(1e-15));
        for (std::size_t t = 0; t < S; ++t) {
            CHECK(r.grad_drop_query(1, t, h) ==
                  Approx(std::abs(r.query(1, t, h))).epsilon(1e-12).margin(1e-15));
            CHECK(r.grad_drop_key(1, t, h) ==
                  Approx(std::abs(r.key(1, t, h))).epsilon(1e-12).margin(1e-15));
            CHECK(r.grad_drop_value(1, t, h) ==
                  Approx(std::abs(r.value(1, t, h))).epsilon(1e-12).margin(1e-15));
        }
    }

    // Layer 0 (block edges): c_GD = |c with block 1 dropped|, the derivative of the metric along
    // the node's change with block 1's attention and MLP outputs frozen at the base run's values.
    std::vector<hook_point> points{{site::attn_q, 0},       {site::attn_k, 0}, {site::attn_v, 0},
                                   {site::attn_pattern, 0}, {site::attn_v, 1}, {site::attn_out, 1},
                                   {site::mlp_out, 1}};
    const activation_cache<double> base = capture(m, runs.xv(), points);
    const activation_cache<double> patch = capture(m, runs.cv(), points);
    const std::vector<hook_point> block1{{site::attn_out, 1}, {site::mlp_out, 1}};
    const hook_point pattern0{site::attn_pattern, 0}, v0{site::attn_v, 0};
    const tensor<double>& A = base.at(pattern0);
    double largest = 0;
    for (std::size_t t = 0; t < S; ++t) {
        for (site s : {site::attn_q, site::attn_k}) {
            hook_set<double> patch_hooks;
            patch_hooks.add({s, 0}, overwrite_position(patch.at({s, 0}), t));
            const auto moved = capture(m, runs.xv(), {pattern0}, &patch_hooks);
            const tensor<double>& A2 = moved.at(pattern0);
            for (std::size_t h = 0; h < H; ++h) {
                const double d =
                    frozen_derivative(m, runs.xv(), ld, base, block1, [&](double alpha) {
                        return add_scaled_change(pattern0, A2, A, h, 1, std::size_t(-1), alpha);
                    });
                CHECK((s == site::attn_q ? r.grad_drop_query(0, t, h) : r.grad_drop_key(0, t, h)) ==
                      approx(std::abs(d)));
                largest = std::max(largest, std::abs(d));
            }
        }
        for (std::size_t h = 0; h < H; ++h) {
            const double d = frozen_derivative(m, runs.xv(), ld, base, block1, [&](double alpha) {
                return add_scaled_change(v0, patch.at(v0), base.at(v0), h, 2, t, alpha);
            });
            CHECK(r.grad_drop_value(0, t, h) == approx(std::abs(d)));
        }
    }
    CHECK(largest > 1e-3);
    // The whole head: the patch run's pattern and all of the head's values.
    for (std::size_t h = 0; h < H; ++h) {
        const double d = frozen_derivative(m, runs.xv(), ld, base, block1, [&](double alpha) {
            hook_set<double> hooks =
                add_scaled_change(pattern0, patch.at(pattern0), A, h, 1, std::size_t(-1), alpha);
            hooks.merge(
                add_scaled_change(v0, patch.at(v0), base.at(v0), h, 2, std::size_t(-1), alpha));
            return hooks;
        });
        CHECK(r.grad_drop_scores(0, h) == approx(std::abs(d)));
    }

    // Sublayer edges (attention 0, MLP 0, attention 1, MLP 1): a layer-1 value node keeps its
    // gradient for both edges below, loses it for its own attention, and with MLP 1 dropped it is
    // the derivative with only hook_mlp_out of block 1 frozen.
    const hook_point v1{site::attn_v, 1};
    for (std::size_t t = 0; t < S; ++t)
        for (std::size_t h = 0; h < H; ++h) {
            const double d =
                frozen_derivative(m, runs.xv(), ld, base, {{site::mlp_out, 1}}, [&](double alpha) {
                    return add_scaled_change(v1, patch.at(v1), base.at(v1), h, 2, t, alpha);
                });
            CHECK(rs.grad_drop_value(1, t, h) ==
                  approx((2 * std::abs(rs.value(1, t, h)) + std::abs(d)) / 3));
        }
}

TEST_CASE("atp_star: bad arguments throw actlens::error", "[atp_star]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<double>(config, 3);
    const auto runs = three_edited_tokens(config.vocab_size);
    const logit_difference ld{{1, 2}, {3, 4}};
    const std::vector<std::int32_t> shorter(4, 1);
    CHECK_THROWS_WITH(
        atp_star(m, runs.cv(), tensor_view<const std::int32_t>(shorter.data(), {1, 4}), ld),
        Catch::Contains("atp_star") && Catch::Contains("differ in shape"));
    // A token id outside the vocabulary, and a metric with answers for one row of two.
    std::vector<std::int32_t> bad = runs.corrupted;
    bad[3] = std::int32_t(config.vocab_size);
    CHECK_THROWS_AS(atp_star(m, runs.cv(), tensor_view<const std::int32_t>(bad.data(), {2, 6}), ld),
                    actlens::error);
    CHECK_THROWS_AS(atp_star(m, runs.cv(), runs.xv(), logit_difference{{1}, {3}}), actlens::error);
    // GradDrop over whole blocks needs two layers (the mean is over E - 1 edges); sublayers do not.
    const auto one = make_random_transformer<double>(model_config::gpt2(1, 24, 4, 50, 32), 3);
    atp_star_options o;
    o.grad_drop = true;
    CHECK_THROWS_WITH(atp_star(one, runs.cv(), runs.xv(), ld, o),
                      Catch::Contains("grad_drop") && Catch::Contains("at least 2 layers"));
    o.edge = grad_drop_edge::sublayer;
    CHECK_NOTHROW(atp_star(one, runs.cv(), runs.xv(), ld, o));
}
