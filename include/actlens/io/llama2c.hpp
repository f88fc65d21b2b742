// actlens/io/llama2c.hpp: Karpathy's llama2.c checkpoint (.bin, the legacy "version 0" layout).
//
// Layout: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), then
// float32 arrays, each stacked over layers: token embedding, attention RMSNorm weights, wq, wk, wv,
// wo, FFN RMSNorm weights, w1 (gate), w2 (down), w3 (up), final RMSNorm weight, two legacy RoPE
// tables (skipped), and a classifier only when vocab_size is negative (not shared with the
// embedding). Linear weights are [out, in], so the mapped file is used in place, without a copy.
// RoPE rotates adjacent pairs (2i, 2i+1) with theta 10000; RMSNorm eps is 1e-5.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/error.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace actlens::io {

/// The config a llama2.c header describes. Throws actlens::error naming the field on a bad value.
inline model_config llama2c_config(const std::int32_t (&h)[7], const std::string& path, bool& shared_classifier) {
    const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; ++i) {
        const std::int64_t value = i == 5 ? (h[i] < 0 ? -std::int64_t(h[i]) : h[i]) : h[i];
        if (value <= 0)
            fail(errc::bad_header, "'{}': header field '{}' = {} must be positive", path, names[i], h[i]);
    }
    shared_classifier = h[5] > 0;
    if (h[0] % h[3] != 0)
        fail(errc::bad_header, "'{}': header field 'dim' = {} is not a multiple of 'n_heads' = {}", path, h[0], h[3]);
    if (h[4] > h[3] || h[3] % h[4] != 0)
        fail(errc::bad_header, "'{}': header field 'n_heads' = {} is not a multiple of 'n_kv_heads' = {}", path, h[3],
             h[4]);
    model_config c = model_config::llama(std::size_t(h[2]), std::size_t(h[0]), std::size_t(h[3]), std::size_t(h[4]),
                                         std::size_t(h[1]), std::size_t(h[5] < 0 ? -std::int64_t(h[5]) : h[5]),
                                         std::size_t(h[6]), kernels::rope_style::adjacent);
    c.family = "llama2c";
    c.tied_embeddings = shared_classifier;
    if ((c.d_head & 1) != 0)
        fail(errc::bad_header, "'{}': head size dim / n_heads = {} must be even for RoPE", path, c.d_head);
    try {
        c.validate();
    } catch (const error& e) {
        fail(errc::bad_header, "'{}': {}", path, e.what());
    }
    return c;
}

/// Loads a llama2.c checkpoint. The file is memory-mapped and its weights used in place.
/// Throws actlens::error: io.201 (cannot open), io.202 (shorter than its header), io.204 (bad header
/// field), io.205 (sizes overflow), io.202/204 when the header disagrees with the file size.
/// (A template only so that it is compiled where it is called, or once with actlens::compiled.)
template <class Deferred = void>
transformer load_llama2c(const std::string& path) {
    auto file = std::make_shared<mapped_file>(path);
    byte_reader in(file->data(), file->size(), path);
    std::int32_t h[7];
    const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; ++i) h[i] = in.read<std::int32_t>(names[i]);
    bool shared = true;
    const model_config c = llama2c_config(h, path, shared);

    const std::size_t d = c.d_model, L = c.n_layers, f = c.d_mlp, V = c.vocab_size;
    const std::size_t qw = c.n_heads * c.d_head, kvw = c.n_kv_heads * c.d_head;
    // Every section's size in floats, with overflow checks (the header is untrusted).
    auto mul3 = [](std::size_t a, std::size_t b, std::size_t c3, const char* what) {
        return checked_mul(checked_mul(a, b, what), c3, what);
    };
    struct section {
        const char* name;
        std::size_t floats;
    };
    const section sections[] = {
        {"token_embedding", checked_mul(V, d, "token_embedding")},
        {"rms_att_weight", checked_mul(L, d, "rms_att_weight")},
        {"wq", mul3(L, qw, d, "wq")},
        {"wk", mul3(L, kvw, d, "wk")},
        {"wv", mul3(L, kvw, d, "wv")},
        {"wo", mul3(L, d, qw, "wo")},
        {"rms_ffn_weight", checked_mul(L, d, "rms_ffn_weight")},
        {"w1", mul3(L, f, d, "w1")},
        {"w2", mul3(L, d, f, "w2")},
        {"w3", mul3(L, f, d, "w3")},
        {"rms_final_weight", d},
        {"freq_cis", checked_mul(c.max_seq_len, c.d_head, "freq_cis")}, // two tables of seq_len * head_size / 2
        {"wcls", shared ? 0 : checked_mul(V, d, "wcls")},
    };
    std::size_t total = 0;
    for (const section& s : sections) total = checked_add(total, s.floats, s.name);
    const std::size_t expected = checked_add(28, checked_mul(total, 4, "weights"), "file");
    if (expected != file->size())
        fail(file->size() < expected ? errc::file_truncated : errc::bad_header,
             "'{}': header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, vocab_size {}, seq_len {}) "
             "implies {} bytes, but the file has {}",
             path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], expected, file->size());

    const float* base = reinterpret_cast<const float*>(file->data() + 28);
    const float* ptr[13];
    for (std::size_t i = 0, off = 0; i < 13; off += sections[i].floats, ++i) ptr[i] = base + off;
    model_weights<float> w;
    w.token_embedding = tensor_view<const float>(ptr[0], {V, d});
    w.layers.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
        layer_weights<float>& lw = w.layers[l];
        lw.ln1_weight = tensor_view<const float>(ptr[1] + l * d, {d});
        lw.w_q = tensor_view<const float>(ptr[2] + l * qw * d, {qw, d});
        lw.w_k = tensor_view<const float>(ptr[3] + l * kvw * d, {kvw, d});
        lw.w_v = tensor_view<const float>(ptr[4] + l * kvw * d, {kvw, d});
        lw.w_o = tensor_view<const float>(ptr[5] + l * d * qw, {d, qw});
        lw.ln2_weight = tensor_view<const float>(ptr[6] + l * d, {d});
        lw.w_gate = tensor_view<const float>(ptr[7] + l * f * d, {f, d});
        lw.w_out = tensor_view<const float>(ptr[8] + l * d * f, {d, f});
        lw.w_in = tensor_view<const float>(ptr[9] + l * f * d, {f, d});
    }
    w.final_norm_weight = tensor_view<const float>(ptr[10], {d});
    w.unembedding = shared ? w.token_embedding : tensor_view<const float>(ptr[12], {V, d});
    file->prefetch();
    w.owners.push_back(std::move(file));
    return transformer(c, std::move(w));
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE transformer load_llama2c<void>(const std::string&);
#endif

} // namespace actlens::io
