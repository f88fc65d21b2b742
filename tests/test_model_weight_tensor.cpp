// Tests of actlens/model/weight_tensor.hpp and of models whose projections are 16-bit (f16 / bf16
// weight_tensors, as the GGUF and safetensors loaders make them from F16 / BF16 files).
//
// The bound for such a model's forward is exact: its panels hold the 16-bit values, which the kernels
// widen to f32 without rounding and multiply in the f32 chains of f32 panels (kernels/packed_weight.hpp),
// and every other weight is f32 in both. So a 16-bit model computes the bits of the f32 model of the
// same rounded weights: logits, the patching plan, and gradients and AtP / RelP with backward_weights
// (but for a product with the unembedding in the backward, as a final soft cap needs).
// Without them its input gradients come from the forward's panels (another summation order: a stated
// tolerance). The f32 computations are checked against brute force and finite differences by the
// tests of their own headers.
#include "tiny_models.hpp"

#include <actlens/core/dtype.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/model/backward.hpp>
#include <actlens/model/backward_weights.hpp>
#include <actlens/model/weight_tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

using namespace actlens;

namespace {

std::uint16_t narrow(float v, dtype type) { return type == dtype::f16 ? f32_to_f16(v) : f32_to_bf16(v); }
float widen(std::uint16_t b, dtype type) { return type == dtype::f16 ? f16_to_f32(b) : bf16_to_f32(b); }

/// max |a - b| over max |b|: for results that differ only in the order of their sums.
template <class V>
double relative_difference(const V* a, const V* b, std::size_t n) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < n; ++i) {
        diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    return diff / scale;
}

/// The bits of a float tensor's elements (equality of bits, not values).
std::vector<std::uint32_t> bits_of(const float* p, std::size_t n) {
    std::vector<std::uint32_t> b(n);
    std::memcpy(b.data(), p, n * sizeof(float));
    return b;
}
std::vector<std::uint32_t> bits_of(const tensor<float>& t) { return bits_of(t.data(), t.size()); }
std::vector<double> values_of(const tensor<double>& t) { return std::vector<double>(t.data(), t.data() + t.size()); }

/// `m`'s weights with every projection and the unembedding rounded to `type`: as 16-bit
/// weight_tensors (`narrow_weights`) and as f32 views of the same values (`wide_weights`).
struct rounded_pair {
    model_weights<float> narrow_weights, wide_weights;
};

rounded_pair round_projections(const basic_transformer<float>& m, dtype type) {
    rounded_pair r;
    r.narrow_weights = r.wide_weights = m.weights();
    auto round = [&](weight_tensor<float>& n16, weight_tensor<float>& n32) {
        const tensor_view<const float> v = n16;
        auto bits = std::make_shared<std::vector<std::uint16_t>>(v.size());
        tensor<float> values(v.shape());
        for (std::size_t i = 0; i < v.size(); ++i) {
            (*bits)[i] = narrow(v.data()[i], type);
            values.data()[i] = widen((*bits)[i], type);
        }
        n16 = weight_tensor<float>(bits->data(), type, v.shape());
        r.narrow_weights.owners.push_back(bits);
        n32 = r.wide_weights.own(std::move(values));
    };
    for (std::size_t l = 0; l < r.narrow_weights.layers.size(); ++l) {
        layer_weights<float>& a = r.narrow_weights.layers[l];
        layer_weights<float>& b = r.wide_weights.layers[l];
        for (auto [x, y] : {std::pair{&a.w_q, &b.w_q}, {&a.w_k, &b.w_k}, {&a.w_v, &b.w_v}, {&a.w_o, &b.w_o},
                            {&a.w_gate, &b.w_gate}, {&a.w_in, &b.w_in}, {&a.w_out, &b.w_out}})
            if (!x->empty()) round(*x, *y);
    }
    round(r.narrow_weights.unembedding, r.wide_weights.unembedding);
    return r;
}

/// A fixed linear function of the logits, as its gradient at the final norm's output.
tensor<float> final_norm_gradient_of(const basic_transformer<float>& m, const tiny::run_pair& runs) {
    const tensor<float> logits = m.forward(runs.cv());
    tensor<float> coef(logits.shape());
    for (std::size_t i = 0; i < coef.size(); ++i) coef.data()[i] = float(std::sin(0.37 * double(i)));
    return unembed_backward(m, coef.view(), logits.view()); // the logits: for a final soft cap
}

/// The gradients of d_norm (at the final norm's output) at every hook point.
activation_cache<float> gradients(const basic_transformer<float>& m, const tiny::run_pair& runs,
                                  const tensor<float>& d_norm, const backward_options& options) {
    auto [logits, tape] = m.run_with_cache(runs.cv(), "*");
    std::vector<hook_point> want;
    for (const hook_point& p : m.hook_points())
        if (p.layer >= 0) want.push_back(p);
    return backward(m, tape, d_norm.view(), want, options);
}

} // namespace

TEST_CASE("weight_tensor: a view of T is used as it is", "[weights]") {
    tensor<float> t({2, 3});
    for (std::size_t i = 0; i < 6; ++i) t.data()[i] = float(i + 1);
    const weight_tensor<float> w = static_cast<const tensor<float>&>(t).view();
    CHECK_FALSE(w.is_narrow());
    CHECK(w.type() == dtype::f32);
    CHECK(weight_tensor<double>().type() == dtype::f64);
    CHECK(w.raw() == t.data());
    CHECK(w.data() == t.data());
    CHECK(w(1, 2) == 6.0f);
    float row[3];
    w.widen_row(1, row);
    CHECK((row[0] == 4.0f && row[1] == 5.0f && row[2] == 6.0f));
    CHECK(weight_tensor<float>().empty());
}

TEST_CASE("weight_tensor: 16-bit values widen exactly, on request, once, shared by copies", "[weights]") {
    for (dtype type : {dtype::f16, dtype::bf16}) {
        INFO(dtype_name(type));
        const std::size_t rows = 3, cols = 5;
        // Stored one byte off alignment, as a GGUF with alignment 1 may hold them.
        std::vector<unsigned char> bytes(rows * cols * 2 + 1);
        std::vector<float> expected(rows * cols);
        for (std::size_t i = 0; i < rows * cols; ++i) {
            const std::uint16_t b = narrow(float(i) * 0.3f - 2.0f + (i == 7 ? 3e-6f : 0.0f), type);
            std::memcpy(bytes.data() + 1 + 2 * i, &b, 2);
            expected[i] = widen(b, type);
        }
        const weight_tensor<float> w(bytes.data() + 1, type, {rows, cols});
        CHECK(w.is_narrow());
        CHECK(w.type() == type);
        CHECK(w.raw() == bytes.data() + 1);
        CHECK(w.shape() == shape_t{rows, cols});
        CHECK(w.is_contiguous());
        // Element and row access convert only what they read.
        CHECK(w(2, 1) == expected[11]);
        std::vector<float> row(cols);
        w.widen_row(1, row.data());
        CHECK(std::vector<float>(expected.begin() + 5, expected.begin() + 10) == row);
        CHECK_FALSE(w.is_widened());
        // view() widens once; copies, and threads racing for it, get the same values.
        const weight_tensor<float> copy = w;
        const float* seen[2] = {nullptr, nullptr};
        std::thread a([&] { seen[0] = w.view().data(); }), b([&] { seen[1] = copy.data(); });
        a.join();
        b.join();
        CHECK(seen[0] == seen[1]);
        CHECK(w.is_widened());
        CHECK(copy.is_widened());
        CHECK(std::vector<float>(seen[0], seen[0] + rows * cols) == expected);
        const tensor_view<const float> converted = w;
        CHECK(converted.data() == seen[0]);
        CHECK(converted.shape() == w.shape());
    }
}

TEST_CASE("16-bit models compute the bits of the f32 model of the same rounded weights", "[weights][backward]") {
    for (const auto& named : tiny::all()) {
        for (dtype type : {dtype::bf16, dtype::f16}) {
            INFO(named.name << " " << dtype_name(type));
            const model_config& config = named.config;
            const auto base = make_random_transformer<float>(config, 31);
            rounded_pair r = round_projections(base, type);
            const basic_transformer<float> m16(config, r.narrow_weights), m32(config, r.wide_weights);
            CHECK(m16.packed().layers[0].w_q.element_type() == type);
            CHECK(m16.packed().layers[0].w_out.element_type() == type);
            CHECK(m16.packed().unembedding.element_type() == type);
            CHECK(m32.packed().unembedding.element_type() == dtype::f32);

            tiny::run_pair runs;
            runs.clean = tiny::tokens(12, config.vocab_size, 1);
            runs.corrupted = runs.clean;
            runs.corrupted[2] = (runs.corrupted[2] + 5) % std::int32_t(config.vocab_size);
            runs.corrupted[6 + 3] = (runs.corrupted[6 + 3] + 3) % std::int32_t(config.vocab_size);
            CHECK(bits_of(m16.forward(runs.cv())) == bits_of(m32.forward(runs.cv())));

            // Gradients through backward_weights (16-bit W^T panels against f32 ones), from the same
            // gradient at the final norm: the same bits.
            const tensor<float> d_norm = final_norm_gradient_of(m32, runs);
            const backward_weights<float> bw16(m16), bw32(m32);
            CHECK(bw16.layers[0].w_q.element_type() == type);
            backward_options fast16, fast32;
            fast16.weights = &bw16;
            fast32.weights = &bw32;
            const auto g16 = gradients(m16, runs, d_norm, fast16), g32 = gradients(m32, runs, d_norm, fast32);
            for (const auto& [name, g] : g32.entries()) CHECK(bits_of(g16.at(name)) == bits_of(g));

            // Without backward_weights a 16-bit model's input gradients read the forward's panels
            // (kernels/gemm_panel_grad.hpp), the f32 model's read its weights in place: the same sums
            // in another order. Each element is a sum of at most 64 products here, through at most 3
            // layers: a few times 64 * 2^-24 relative, so 1e-4 of the largest gradient leaves margin
            // while a wrong weight would be off by O(1).
            const tensor<float> d_norm16 = final_norm_gradient_of(m16, runs);
            CHECK(relative_difference(d_norm16.data(), d_norm.data(), d_norm.size()) <= 1e-4);
            const auto s16 = gradients(m16, runs, d_norm, {}), s32 = gradients(m32, runs, d_norm, {});
            for (const auto& [name, g] : s32.entries())
                CHECK(relative_difference(s16.at(name).data(), g.data(), g.size()) <= 1e-4);
            // No f32 copy of any projection (or of the unembedding) was made on the way.
            for (const layer_weights<float>& l : m16.weights().layers)
                CHECK_FALSE((l.w_q.is_widened() || l.w_k.is_widened() || l.w_v.is_widened() ||
                             l.w_o.is_widened() || l.w_gate.is_widened() || l.w_in.is_widened() ||
                             l.w_out.is_widened()));
            CHECK_FALSE(m16.weights().unembedding.is_widened());

            // The patching plan (forwards only) gives the same bits; AtP / RelP too with
            // backward_weights, and to the tolerance above without.
            const logit_difference ld{{1, 2}, {3, 4}};
            for (auto target : {patch_target::resid_pre, patch_target::head, patch_target::neuron}) {
                INFO("target " << int(target));
                const auto p16 = activation_patch(m16, runs.cv(), runs.xv(), ld, target);
                const auto p32 = activation_patch(m32, runs.cv(), runs.xv(), ld, target);
                CHECK(values_of(p16.scores) == values_of(p32.scores));
                for (rule which : {rule::gradient, rule::relp}) {
                    INFO("rule " << int(which));
                    attribution_options o16, o32;
                    o16.backward.rule = o32.backward.rule = which;
                    const auto a16 = attribution_patch(m16, runs.cv(), runs.xv(), ld, target, o16);
                    const auto a32 = attribution_patch(m32, runs.cv(), runs.xv(), ld, target, o32);
                    CHECK(relative_difference(a16.scores.data(), a32.scores.data(), a32.scores.size()) <= 1e-4);
                    o16.backward.weights = &bw16;
                    o32.backward.weights = &bw32;
                    const auto b16 = attribution_patch(m16, runs.cv(), runs.xv(), ld, target, o16);
                    const auto b32 = attribution_patch(m32, runs.cv(), runs.xv(), ld, target, o32);
                    // A final soft cap makes the metric's gradient a product with the unembedding,
                    // which a 16-bit model takes from its panels: the tolerance above; else exact.
                    if (config.final_logit_softcap > 0)
                        CHECK(relative_difference(b16.scores.data(), b32.scores.data(), b32.scores.size()) <= 1e-4);
                    else
                        CHECK(values_of(b16.scores) == values_of(b32.scores));
                }
            }
        }
    }
}
