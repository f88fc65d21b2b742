// Tests of io/gguf_model.hpp's gguf_load_options: models whose projections stay in the GGUF file's
// rows (F16 and BF16 and Q8_0 written by save_gguf; Q4_0, Q4_K and Q6_K built block by block,
// tests/ggml_blocks.hpp) and are multiplied in place (kernels/gemm_rows.hpp).
//
// The reference is the f32 model of the decoded weights multiplied by the same row kernels (f32 rows):
// decoding is exact (each value is ggml's dequantised value, checked in test_kernels_rows.cpp) and
// the kernels sum every element in the same 32 lanes whatever the stored format, so the logits,
// the gradients of the backward, AtP and the patching plan are bit for bit those of the reference
// (bound 0, from the arithmetic). Against the f32 model with packed panels (another summation
// order) each product differs by at most 2 gamma_n sum |x w| (n = 2 ceil(in / 16) + 7, the larger
// of the two orders' counts, see test_kernels_rows.cpp); through the network that is checked
// loosely, with greedy tokens equal.
#include "ggml_blocks.hpp"
#include "test_files.hpp"
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/io/gguf.hpp>
#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/model/backward.hpp>
#include <actlens/model/backward_weights.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace actlens;
using kernels::weight_format;

namespace {

// Dimensions that are whole K-quant super-blocks (256) wherever a projection's row runs.
model_config rows_config() {
    model_config c = model_config::llama(2, 256, 4, 2, 512, 48, 32, kernels::rope_style::adjacent);
    c.tied_embeddings = true;
    return c;
}

std::string gguf_path(const std::string& name) { return (temp_folder("actlens_test_gguf_rows") / name).string(); }

io::ggml_type ggml_of(weight_format f) {
    switch (f) {
    case weight_format::f16: return io::ggml_type::f16;
    case weight_format::bf16: return io::ggml_type::bf16;
    case weight_format::q8_0: return io::ggml_type::q8_0;
    case weight_format::q4_0: return io::ggml_type::q4_0;
    case weight_format::q4_k: return io::ggml_type::q4_k;
    case weight_format::q6_k: return io::ggml_type::q6_k;
    default: return io::ggml_type::f32;
    }
}

/// A llama GGUF of rows_config() whose 2-D tensors (projections and the tied embedding) are in
/// format f: save_gguf's own for F16, BF16 and Q8_0; random blocks of the format for the others.
std::string write_model(weight_format f) {
    const std::string path = gguf_path(std::string("model_") + kernels::weight_format_name(f) + ".gguf");
    const transformer m = make_random_transformer(rows_config(), 3);
    if (f == weight_format::f16 || f == weight_format::bf16 || f == weight_format::q8_0) {
        io::save_gguf(m, path, ggml_of(f));
        return path;
    }
    const std::string f32_path = gguf_path("model_f32_source.gguf");
    io::save_gguf(m, f32_path, io::ggml_type::f32);
    const io::gguf_file src(f32_path);
    io::gguf_writer out;
    for (const auto& [key, value] : src.metadata())
        if (key != "general.alignment") out.set(key, value);
    std::mt19937 rng(11);
    for (const io::gguf_tensor_info& t : src.tensors()) {
        if (t.ne.size() != 2) {
            out.add_tensor(t.name, src.mapped_view(t.name));
            continue;
        }
        const shape_t shape = t.shape();
        std::vector<float> values;
        const std::vector<unsigned char> bytes = ggml_blocks::random_rows(rng, f, shape[0], shape[1], values, 0.02f);
        out.add_tensor_bytes(t.name, ggml_of(f), shape, bytes.data(), bytes.size());
    }
    out.write(path);
    return path;
}

/// The f32 model of `m`'s decoded projections and unembedding, multiplied by the row kernels.
transformer f32_rows_reference(const transformer& m) {
    model_weights<float> w = m.weights();
    auto f32_rows = [&](weight_tensor<float>& v) {
        auto held = std::make_shared<tensor<float>>(tensor<float>::copy_of(v.view()));
        v = weight_tensor<float>(held->data(), weight_format::f32, v.shape(), false, true);
        w.owners.push_back(std::move(held));
    };
    for (layer_weights<float>& l : w.layers)
        for (weight_tensor<float>* p : {&l.w_q, &l.w_k, &l.w_v, &l.w_o, &l.w_gate, &l.w_in, &l.w_out}) f32_rows(*p);
    f32_rows(w.unembedding);
    return transformer(m.config(), std::move(w));
}

/// The f32 model of `m`'s decoded weights as plain tensors (packed f32 panels).
transformer f32_packed_reference(const transformer& m) {
    model_weights<float> w = m.weights();
    for (layer_weights<float>& l : w.layers)
        for (weight_tensor<float>* p : {&l.w_q, &l.w_k, &l.w_v, &l.w_o, &l.w_gate, &l.w_in, &l.w_out})
            *p = w.own(tensor<float>::copy_of(p->view()));
    w.unembedding = w.own(tensor<float>::copy_of(w.unembedding.view()));
    return transformer(m.config(), std::move(w));
}

} // namespace

TEST_CASE("load_gguf mapped: every format gives the logits, gradients and patching of the f32 model of its decoded "
          "weights",
          "[gguf][model][rows]") {
    const std::vector<std::int32_t> clean = tiny::tokens(7, 48, 1);
    std::vector<std::int32_t> corrupted = clean;
    corrupted[2] = (corrupted[2] + 5) % 48;
    const tensor_view<const std::int32_t> batch(clean.data(), {1, clean.size()});
    const logit_difference metric{{1}, {2}};
    for (weight_format f : {weight_format::f16, weight_format::bf16, weight_format::q8_0, weight_format::q4_0,
                            weight_format::q4_k, weight_format::q6_k}) {
        INFO(kernels::weight_format_name(f));
        const std::string path = write_model(f);
        io::gguf_load_options mapped_options;
        mapped_options.weights = io::gguf_weights::mapped;
        const transformer mapped = io::load_gguf(path, mapped_options);
        const transformer automatic = io::load_gguf(path);
        for (const transformer* m : {&mapped, &automatic}) {
            CHECK(m->weights().layers[1].w_in.format() == f);
            CHECK(m->weights().layers[1].w_in.in_mapped_file());
            CHECK(m->packed().layers[1].w_in.is_mapped());
            CHECK(m->packed().unembedding.is_mapped()); // tied: the embedding's rows in the file
            CHECK(m->packed().unembedding.format() == f);
        }
        const transformer reference = f32_rows_reference(mapped);

        // Logits: the same bits.
        const tensor<float> logits = mapped.forward(clean);
        CHECK(max_abs_diff(logits, reference.forward(clean)) == 0.0);
        CHECK(max_abs_diff(logits, automatic.forward(clean)) == 0.0);

        // Gradients at every hook point through the backward: the same bits.
        auto gradients = [&](const transformer& m) {
            auto [out, tape] = m.run_with_cache(batch, "*");
            tensor<float> coef(out.shape());
            for (std::size_t i = 0; i < coef.size(); ++i) coef.data()[i] = float(int(i % 7) - 3) * 0.25f;
            const tensor<float> d_norm = unembed_backward(m, coef.view(), out.view());
            return backward(m, tape, d_norm.view(), m.hook_points());
        };
        const activation_cache<float> g = gradients(mapped), g_reference = gradients(reference);
        for (const hook_point& p : mapped.hook_points()) {
            INFO(p.name());
            CHECK(max_abs_diff(g.at(p), g_reference.at(p)) == 0.0);
        }
        // The backward with backward_weights (quantised: W^T read from W's rows).
        backward_weights<float> bw(mapped);
        backward_options bo;
        bo.weights = &bw;
        {
            auto [out, tape] = mapped.run_with_cache(batch, "*");
            tensor<float> coef(out.shape());
            for (std::size_t i = 0; i < coef.size(); ++i) coef.data()[i] = float(int(i % 7) - 3) * 0.25f;
            const tensor<float> d_norm = unembed_backward(mapped, coef.view(), out.view());
            const hook_point first = mapped.hook_points().front();
            const activation_cache<float> with = backward(mapped, tape, d_norm.view(), {first}, bo);
            double largest = 0;
            for (float v : g.at(first)) largest = std::max(largest, double(std::abs(v)));
            if (kernels::is_quantised(f))
                CHECK(max_abs_diff(with.at(first), g.at(first)) == 0.0);
            else // 16-bit W^T panels: another summation order (loose, as for the logits below)
                CHECK(max_abs_diff(with.at(first), g.at(first)) <= 1e-4 * largest);
        }

        // AtP and the patching plan: the same scores.
        const auto atp = attribution_patch(mapped, clean, corrupted, metric, patch_target::resid_pre);
        const auto atp_reference = attribution_patch(reference, clean, corrupted, metric, patch_target::resid_pre);
        CHECK(max_abs_diff(atp.scores, atp_reference.scores) == 0.0);
        const auto plan = activation_patch(mapped, clean, corrupted, metric, patch_target::resid_pre);
        const auto plan_reference = activation_patch(reference, clean, corrupted, metric, patch_target::resid_pre);
        CHECK(max_abs_diff(plan.scores, plan_reference.scores) == 0.0);

        // Against packed f32 panels of the same values (and the packed load): rounding order only.
        const transformer packed_reference = f32_packed_reference(mapped);
        io::gguf_load_options packed_options;
        packed_options.weights = io::gguf_weights::packed;
        const transformer packed = io::load_gguf(path, packed_options);
        CHECK_FALSE(packed.packed().layers[1].w_in.is_mapped());
        const tensor<float> panel_logits = packed_reference.forward(clean);
        double scale = 0;
        for (float v : panel_logits) scale = std::max(scale, double(std::abs(v)));
        CHECK(scale > 0.1);
        CHECK(max_abs_diff(logits, panel_logits) <= 1e-5 * scale);
        CHECK(max_abs_diff(packed.forward(clean), panel_logits) <= 1e-5 * scale);

        // Readers of weight values: element access, widen_row and view() decode the same values.
        const weight_tensor<float>& wq = mapped.weights().layers[0].w_q;
        const tensor_view<const float> wq_values = reference.weights().layers[0].w_q.view();
        std::vector<float> row(wq.extent(1));
        wq.widen_row(5, row.data());
        CHECK(std::equal(row.begin(), row.end(), wq_values.data() + 5 * wq.extent(1)));
        CHECK(wq(3, 17) == wq_values(3, 17));
        CHECK(max_abs_diff(wq.view(), wq_values) == 0.0);
    }
}

TEST_CASE("load_gguf: a projection of a type no kernel reads names the tensor and the type", "[gguf][model][errors]") {
    const std::string f32_path = gguf_path("model_f32_for_q5.gguf");
    io::save_gguf(make_random_transformer(rows_config(), 3), f32_path, io::ggml_type::f32);
    const io::gguf_file src(f32_path);
    io::gguf_writer out;
    for (const auto& [key, value] : src.metadata())
        if (key != "general.alignment") out.set(key, value);
    for (const io::gguf_tensor_info& t : src.tensors()) {
        if (t.name != "blk.1.ffn_up.weight") {
            out.add_tensor(t.name, src.mapped_view(t.name));
            continue;
        }
        // Q5_K: 256 values in 176 bytes, parsed and sized but not decoded.
        const std::vector<unsigned char> bytes(t.shape()[0] * t.shape()[1] / 256 * 176, 0);
        out.add_tensor_bytes(t.name, io::ggml_type::q5_k, t.shape(), bytes.data(), bytes.size());
    }
    const std::string path = gguf_path("model_q5_k.gguf");
    out.write(path);
    for (io::gguf_weights mode : {io::gguf_weights::automatic, io::gguf_weights::mapped, io::gguf_weights::packed}) {
        io::gguf_load_options o;
        o.weights = mode;
        CHECK_THAT(error_of([&] { (void)io::load_gguf(path, o); }),
                   Catch::Contains("[actlens.io.206]") && Catch::Contains("blk.1.ffn_up.weight") &&
                       Catch::Contains("Q5_K"));
    }
    // The writer refuses bytes that do not fit the shape.
    io::gguf_writer bad;
    const std::vector<unsigned char> bytes(144, 0);
    CHECK_THAT(error_of([&] { bad.add_tensor_bytes("w", io::ggml_type::q4_k, shape_t{1, 128}, bytes.data(), 144); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("'w'") && Catch::Contains("Q4_K"));
    CHECK_THAT(error_of([&] { bad.add_tensor_bytes("w", io::ggml_type::q4_k, shape_t{2, 256}, bytes.data(), 144); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("288"));
}

TEST_CASE("save_gguf Q4_0: blocks within half a step of the weights, loaded mapped with the reference's logits",
          "[gguf][save][rows]") {
    const transformer m = make_random_transformer(rows_config(), 5);
    const std::string path = gguf_path("model_q4_0_saved.gguf");
    io::save_gguf(m, path, io::ggml_type::q4_0);
    const io::gguf_file f(path);
    CHECK(f.get_uint("general.file_type") == 2);
    CHECK(f.tensor_info("blk.0.ffn_down.weight").type == io::ggml_type::q4_0);
    // ggml's Q4_0: d = (the value of largest magnitude) / -8, q = trunc(x / d + 8.5) capped at 15, so
    // |x - d (q - 8)| <= |d| / 2, except where the cap bites (x / d > 7.5, the side opposite the
    // largest value: 7 steps of d instead of 8): <= |d|; plus 8 |d| times d's f16 rounding (2^-11
    // relative) and the f32 rounding of x / d: a bound of (1/2 or 1 + 8 * 2^-11 + 2^-10) |d| with
    // |d| = amax / 8 per block.
    const tensor<float> decoded = f.to_float("blk.0.ffn_down.weight");
    const tensor_view<const float> original = m.weights().layers[0].w_out.view();
    REQUIRE(decoded.size() == original.size());
    double worst = 0; // error over the block's bound
    for (std::size_t b = 0; b < decoded.size() / 32; ++b) {
        double amax = 0;
        for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, double(std::abs(original.data()[b * 32 + i])));
        const double d = amax / 8;
        for (std::size_t i = 0; i < 32; ++i) {
            const double x = original.data()[b * 32 + i], err = std::abs(double(decoded.data()[b * 32 + i]) - x);
            const double steps = std::abs(x) / d > 7.5 && std::abs(x) < amax ? 1.0 : 0.5;
            worst = std::max(worst, amax > 0 ? err / ((steps + 8 * std::ldexp(1.0, -11) + std::ldexp(1.0, -10)) * d) : err);
        }
    }
    CHECK(worst <= 1.0);
    CHECK(worst > 0.5); // the quantisation is coarse: some values sit near half a step away
    const transformer mapped = io::load_gguf(path);
    CHECK(mapped.packed().layers[0].w_out.format() == weight_format::q4_0);
    const std::vector<std::int32_t> tokens = tiny::tokens(5, 48, 2);
    CHECK(max_abs_diff(mapped.forward(tokens), f32_rows_reference(mapped).forward(tokens)) == 0.0);
    // Non-finite values have no Q4_0 form.
    tensor<float> bad({1, 32});
    bad.data()[3] = std::numeric_limits<float>::infinity();
    io::gguf_writer w;
    CHECK_THAT(error_of([&] { w.add_tensor("y", bad.view(), io::ggml_type::q4_0); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("element 3") && Catch::Contains("Q4_0"));
}
