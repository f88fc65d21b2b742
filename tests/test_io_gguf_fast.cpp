// Tests of the fast precision (kernels/precision.hpp) on a model whose weights are read in place
// from its GGUF file (F16, BF16 and Q8_0 written by save_gguf): transformer::set_precision reaches
// every product, the logits are the unembedding's fast product of the final-normed activations within
// the bound of tests/fast_checks.hpp, the same bits on 1 and 2 threads and for a sequence alone or in
// a batch; weights with no fast path (f16 panels packed at load) are multiplied exactly.
#include "fast_checks.hpp"
#include "test_files.hpp"
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace actlens;
using kernels::precision;
using kernels::weight_format;

namespace {

io::ggml_type ggml_type_of(weight_format f) {
    return f == weight_format::f16 ? io::ggml_type::f16 : f == weight_format::bf16 ? io::ggml_type::bf16 : io::ggml_type::q8_0;
}

// The largest |a - b| over |b|'s largest value, as a fraction.
double relative_gap(const tensor<float>& a, const tensor<float>& b) {
    double gap = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        gap = std::max(gap, double(std::abs(a.data()[i] - b.data()[i])));
        scale = std::max(scale, double(std::abs(b.data()[i])));
    }
    return gap / scale;
}

} // namespace

TEST_CASE("transformer::set_precision: fast logits of a model read in place from F16, BF16 and Q8_0 GGUF rows",
          "[gguf][model][rows]") {
    // Rows of 256 (d) and 512 (d_mlp): whole Q8_0 blocks and K chunks.
    model_config c = model_config::llama(2, 256, 4, 2, 512, 48, 32, kernels::rope_style::adjacent);
    c.tied_embeddings = true;
    const transformer source = make_random_transformer(c, 5);
    const std::vector<std::int32_t> first = tiny::tokens(9, 48, 1), second = tiny::tokens(9, 48, 2);
    for (weight_format f : {weight_format::f16, weight_format::bf16, weight_format::q8_0}) {
        INFO(kernels::weight_format_name(f));
        const std::string path =
            (temp_folder("actlens_test_gguf_fast") / (std::string(kernels::weight_format_name(f)) + ".gguf")).string();
        io::save_gguf(source, path, ggml_type_of(f));
        io::gguf_load_options options;
        options.weights = io::gguf_weights::mapped;
        transformer m = io::load_gguf(path, options);
        CHECK(m.precision_mode() == precision::exact);
        const tensor<float> exact = m.forward(first);
        m.set_precision(precision::fast);
        CHECK(m.precision_mode() == precision::fast);
        CHECK(m.packed().layers[1].w_out.precision_mode() == precision::fast);
        const auto [fast, cache] = m.run_with_cache(first, "ln_final.hook_normalized");
        REQUIRE(fast.shape() == exact.shape());
        CHECK(max_abs_diff(fast, exact) > 0.0); // the fast products were used
        // A loose sanity check, not a bound: rounding every activation of a 2-layer network to bf16
        // (or 8 bits per block) moves the logits by a few percent of their range at most.
        CHECK(relative_gap(fast, exact) < 0.1);

        // The logits: the fast product of the unembedding rows with the final-normed activations.
        const tensor<float>& normed = cache.at("ln_final.hook_normalized");
        const std::size_t tokens = first.size(), d = c.d_model, vocab = c.vocab_size;
        std::vector<float> x(normed.data(), normed.data() + tokens * d);
        const tensor<float> unembedding = tensor<float>::copy_of(m.weights().unembedding.view());
        const std::vector<float> w(unembedding.data(), unembedding.data() + vocab * d);
        const fast_checks::rounded r = fast_checks::round_operands(f, x, tokens, d, w, d);
        double worst = 0;
        for (std::size_t t = 0; t < tokens; ++t)
            for (std::size_t v = 0; v < vocab; ++v) {
                long double e = 0, mag = 0;
                for (std::size_t i = 0; i < d; ++i) {
                    e += r.x[t * d + i] * r.w[v * d + i];
                    mag += std::abs(r.x[t * d + i] * r.w[v * d + i]);
                }
                const double bound = fast_checks::gamma(fast_checks::fast_roundings(f, d)) * double(mag);
                worst = std::max(worst, std::abs(double(fast.data()[t * vocab + v] - e)) / bound);
            }
        CHECK(worst <= 1.0);

        // Determinism: 2 threads, and the sequence in a batch of two.
        {
            kernels::detail::scoped_threads team(2);
            CHECK(max_abs_diff(m.forward(first), fast) == 0.0);
        }
        std::vector<std::int32_t> both = first;
        both.insert(both.end(), second.begin(), second.end());
        const tensor<float> batch = m.forward(tensor_view<const std::int32_t>(both.data(), {2, first.size()}));
        const tensor<float> alone = m.forward(second);
        REQUIRE(batch.size() == 2 * fast.size());
        CHECK(std::equal(fast.data(), fast.data() + fast.size(), batch.data(), [](float a, float b) {
            return std::memcmp(&a, &b, 4) == 0;
        }));
        CHECK(std::equal(alone.data(), alone.data() + alone.size(), batch.data() + fast.size(), [](float a, float b) {
            return std::memcmp(&a, &b, 4) == 0;
        }));
        m.set_precision(precision::exact);
        CHECK(max_abs_diff(m.forward(first), exact) == 0.0);
    }

    // F16 panels packed at load have no fast path: fast mode multiplies them exactly.
    const std::string path = (temp_folder("actlens_test_gguf_fast") / "packed.gguf").string();
    io::save_gguf(source, path, io::ggml_type::f16);
    io::gguf_load_options options;
    options.weights = io::gguf_weights::packed;
    transformer packed = io::load_gguf(path, options);
    REQUIRE_FALSE(packed.packed().layers[0].w_q.is_mapped());
    const tensor<float> exact = packed.forward(first);
    packed.set_precision(precision::fast);
    CHECK(max_abs_diff(packed.forward(first), exact) == 0.0);
}
