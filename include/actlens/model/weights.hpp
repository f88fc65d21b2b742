// actlens/model/weights.hpp: the parameters of a transformer, as views with a keep-alive.
//
// Weights can live in a memory-mapped file (used in place) or in tensors the loader converted;
// `owners` keeps whatever backs them alive. Linear weights are stored [out, in] row-major, as
// PyTorch's nn.Linear and llama2.c do.
// The projections and the unembedding are weight_tensors (model/weight_tensor.hpp): tensor_views of
// T, or, for a model loaded from an F16, BF16 or quantised GGUF file, the file's rows, which the
// forward multiplies with in place (kernels/gemm_rows.hpp) or as 16-bit panels, and which become f32
// only for a reader that asks (view()).
// Norm gains, biases and the embedding tables are always T (they are small, except the token
// embedding of a large vocabulary; the forward reads one row of it per token).
#pragma once

#include <actlens/core/memory.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/weight_tensor.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace actlens {

/// The parameters of one block. Optional ones (biases, gate, LayerNorm bias) are empty views when absent.
template <class T>
struct layer_weights {
    tensor_view<const T> ln1_weight, ln1_bias; ///< [d]
    weight_tensor<T> w_q;                      ///< [H d_h, d]
    tensor_view<const T> b_q;                  ///< [H d_h]
    weight_tensor<T> w_k;                      ///< [H_kv d_h, d]
    tensor_view<const T> b_k;                  ///< [H_kv d_h]
    weight_tensor<T> w_v;                      ///< [H_kv d_h, d]
    tensor_view<const T> b_v;                  ///< [H_kv d_h]
    tensor_view<const T> q_norm, k_norm;       ///< [d_h]  per-head RMSNorm gains of q and k (qk_norm)
    weight_tensor<T> w_o;                      ///< [d, H d_h]
    tensor_view<const T> b_o;                  ///< [d]
    tensor_view<const T> ln1_post_weight;      ///< [d]  RMSNorm gain on the attention output (post_norms)
    tensor_view<const T> ln2_weight, ln2_bias; ///< [d]
    weight_tensor<T> w_gate;                   ///< [d_mlp, d]  SwiGLU gate (Llama gate_proj, llama2.c w1)
    weight_tensor<T> w_in;                     ///< [d_mlp, d]  GPT-2 c_fc, Llama up_proj (llama2.c w3)
    tensor_view<const T> b_in;                 ///< [d_mlp]
    weight_tensor<T> w_out;                    ///< [d, d_mlp]  GPT-2 mlp.c_proj, Llama down_proj (llama2.c w2)
    tensor_view<const T> b_out;                ///< [d]
    tensor_view<const T> ln2_post_weight;      ///< [d]  RMSNorm gain on the MLP output (post_norms)
};

/// All parameters of a transformer.
template <class T>
struct model_weights {
    tensor_view<const T> token_embedding;    ///< [V, d]
    tensor_view<const T> position_embedding; ///< [max_seq_len, d], learned positions only
    std::vector<layer_weights<T>> layers;
    tensor_view<const T> final_norm_weight, final_norm_bias; ///< [d]
    weight_tensor<T> unembedding;                            ///< [V, d]; the token embedding when tied

    /// Whatever backs the views (mapped files, converted tensors).
    std::vector<std::shared_ptr<const void>> owners;

    /// Takes ownership of a tensor and returns a view of it.
    tensor_view<const T> own(tensor<T>&& t) {
        auto held = std::make_shared<tensor<T>>(std::move(t));
        tensor_view<const T> v = static_cast<const tensor<T>&>(*held).view();
        owners.push_back(std::move(held));
        return v;
    }

    /// Checks every tensor's presence and shape against the config; throws actlens::error
    /// (model.401) naming the tensor, its shape and the expected one.
    void validate(const model_config& c) const {
        const std::size_t d = c.d_model, qw = c.n_heads * c.d_head, kvw = c.n_kv_heads * c.d_head;
        // Generic: tensor_views and weight_tensors (whose data() would widen 16-bit values).
        auto check = [](const auto& v, std::initializer_list<std::size_t> dims, const std::string& name) {
            const shape_t want(dims);
            if (stored_data(v) == nullptr)
                fail(errc::bad_config, "weights: tensor '{}' is missing (expected shape {})", name, want.to_string());
            if (v.shape() != want || !v.is_contiguous())
                fail(errc::bad_config, "weights: tensor '{}' has shape {}, expected {}", name, v.shape().to_string(),
                     want.to_string());
        };
        auto check_optional = [&](const auto& v, bool present, std::size_t n, const std::string& name) {
            if (present) check(v, {n}, name);
        };
        const bool ln = c.norm == norm_kind::layer_norm;
        check(token_embedding, {c.vocab_size, d}, "token_embedding");
        if (c.position == position_kind::learned) check(position_embedding, {c.max_seq_len, d}, "position_embedding");
        if (layers.size() != c.n_layers)
            fail(errc::bad_config, "weights: {} layers given, config says {}", layers.size(), c.n_layers);
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const layer_weights<T>& w = layers[l];
            const std::string p = "layers." + std::to_string(l) + ".";
            check(w.ln1_weight, {d}, p + "ln1_weight");
            check_optional(w.ln1_bias, ln, d, p + "ln1_bias");
            check(w.w_q, {qw, d}, p + "w_q");
            check(w.w_k, {kvw, d}, p + "w_k");
            check(w.w_v, {kvw, d}, p + "w_v");
            check_optional(w.b_q, c.qkv_bias, qw, p + "b_q");
            check_optional(w.b_k, c.qkv_bias, kvw, p + "b_k");
            check_optional(w.b_v, c.qkv_bias, kvw, p + "b_v");
            check_optional(w.q_norm, c.qk_norm, c.d_head, p + "q_norm");
            check_optional(w.k_norm, c.qk_norm, c.d_head, p + "k_norm");
            check(w.w_o, {d, qw}, p + "w_o");
            check_optional(w.b_o, c.out_bias, d, p + "b_o");
            check(w.ln2_weight, {d}, p + "ln2_weight");
            check_optional(w.ln2_bias, ln, d, p + "ln2_bias");
            if (c.gated_mlp()) check(w.w_gate, {c.d_mlp, d}, p + "w_gate");
            check(w.w_in, {c.d_mlp, d}, p + "w_in");
            check_optional(w.b_in, c.out_bias, c.d_mlp, p + "b_in");
            check(w.w_out, {d, c.d_mlp}, p + "w_out");
            check_optional(w.b_out, c.out_bias, d, p + "b_out");
            check_optional(w.ln1_post_weight, c.post_norms, d, p + "ln1_post_weight");
            check_optional(w.ln2_post_weight, c.post_norms, d, p + "ln2_post_weight");
        }
        check(final_norm_weight, {d}, "final_norm_weight");
        check_optional(final_norm_bias, ln, d, "final_norm_bias");
        check(unembedding, {c.vocab_size, d}, "unembedding");
    }

private:
    static const void* stored_data(const tensor_view<const T>& v) noexcept { return v.data(); }
    static const void* stored_data(const weight_tensor<T>& v) noexcept { return v.raw(); }
};

/// One layer's projections packed for kernels::linear: W itself in packed_weights (the forward), W^T
/// in backward_weights (the backward's input gradients). The layer walk is shared so that both
/// always pack the same projections.
template <class T>
struct packed_layer {
    kernels::packed_weight<T> w_q, w_k, w_v, w_o, w_gate, w_in, w_out;

    /// Sum of `size(w)` over the projections of `l` (w_gate only when `gate`, a gated MLP).
    template <class Size>
    static std::size_t total_size(const layer_weights<T>& l, bool gate, Size&& size) {
        return size(l.w_q) + size(l.w_k) + size(l.w_v) + size(l.w_o) + (gate ? size(l.w_gate) : 0) +
               size(l.w_in) + size(l.w_out);
    }

    /// Packs every projection of `l` with `pack(w)` (w_gate only when `gate`), in a fixed order.
    template <class Pack>
    static packed_layer pack_all(const layer_weights<T>& l, bool gate, Pack&& pack) {
        packed_layer p;
        p.w_q = pack(l.w_q);
        p.w_k = pack(l.w_k);
        p.w_v = pack(l.w_v);
        p.w_o = pack(l.w_o);
        if (gate) p.w_gate = pack(l.w_gate);
        p.w_in = pack(l.w_in);
        p.w_out = pack(l.w_out);
        return p;
    }
};

/// The linear weights of a model repacked once for kernels::linear (see kernels::packed_weight):
/// what the transformer multiplies with. For float models the panels keep each weight's element
/// type (f32, or an F16 / BF16 file's 16-bit values), made when the transformer is constructed: a
/// copy of every f32 projection and of the unembedding, and the only copy of 16-bit ones (read
/// from their file once, in parallel; model/weight_tensor.hpp); for double it only points at model_weights.
/// Weights marked multiplied_in_place() (quantised ones, and 16-bit ones a loader chose to map) are
/// not packed: their packed_weight refers to the stored rows (kernels::packed_weight::mapped), which
/// model_weights' owners keep alive.
/// The copy is taken at construction: writing later into the memory behind model_weights' views
/// does not reach it (build a new transformer to edit weights).
template <class T>
struct packed_weights {
    using layer = packed_layer<T>;
    std::vector<layer> layers;
    kernels::packed_weight<T> unembedding;
    /// The buffer every panel lives in (null when nothing is packed). It moves with the model and is
    /// new for every model, which makes it the model's identity for objects made from it
    /// (backward_weights), where an address would not be: a moved model has a new one, and a new
    /// model can be built where a destroyed one was.
    std::shared_ptr<const void> storage;

    packed_weights() = default;

    /// Sets the precision of every projection and the unembedding (kernels/precision.hpp): weights
    /// with no fast path (packed panels; F32, Q4_0, Q4_K, Q6_K rows) stay exact. Not safe while a
    /// forward with these weights runs.
    void set_precision(kernels::precision mode) noexcept {
        for (layer& l : layers)
            for (kernels::packed_weight<T>* w : {&l.w_q, &l.w_k, &l.w_v, &l.w_o, &l.w_gate, &l.w_in, &l.w_out})
                w->set_precision(mode);
        unembedding.set_precision(mode);
    }
    /// The precision set_precision gave (exact by default).
    kernels::precision precision_mode() const noexcept { return unembedding.precision_mode(); }
    /// Packs every linear weight of `w`, which must have passed w.validate(c), into one buffer.
    packed_weights(const model_config& c, const model_weights<T>& w) {
        using packed = kernels::packed_weight<T>;
        const bool gate = c.gated_mlp();
        // Bytes of each weight's panels, rounded to 64 so that every weight's panels stay aligned.
        auto size = [](const weight_tensor<T>& v) {
            if (v.multiplied_in_place()) return std::size_t(0);
            return (packed::packed_bytes(v.extent(0), v.extent(1), v.type()) + 63) / 64 * 64;
        };
        std::size_t total = size(w.unembedding);
        for (const layer_weights<T>& l : w.layers) total += layer::total_size(l, gate, size);
        // Weights multiplied in place need no buffer, but the model still needs its identity.
        auto in_place = [](const weight_tensor<T>& v) { return std::size_t(v.multiplied_in_place()); };
        std::size_t mapped = in_place(w.unembedding);
        for (const layer_weights<T>& l : w.layers) mapped += layer::total_size(l, gate, in_place);
        std::shared_ptr<unsigned char> storage = total    ? kernels::allocate_packed_storage<unsigned char>(total)
                                                 : mapped ? std::make_shared<unsigned char>()
                                                          : nullptr;
        std::size_t offset = 0;
        auto pack = [&](const weight_tensor<T>& v) {
            if constexpr (std::is_same_v<T, float>) // the stored rows, where they are (kernels/gemm_rows.hpp)
                if (v.multiplied_in_place()) return packed::mapped(v.raw(), v.format(), v.extent(0), v.extent(1), nullptr);
            unsigned char* at = storage.get() + offset;
            offset += size(v);
            if (v.is_narrow()) {
                packed p(v.raw(), v.type(), v.extent(0), v.extent(1), at, storage);
                // The panels are now the weights the forward reads: resident memory need not also
                // hold the file's pages (a reader asking for f32 values faults them in again).
                if (v.in_mapped_file()) actlens::detail::drop_file_pages(v.raw(), v.size() * dtype_size(v.type()));
                return p;
            }
            return packed(v.view().data(), v.extent(0), v.extent(1), reinterpret_cast<T*>(at), storage);
        };
        layers.reserve(w.layers.size());
        for (const layer_weights<T>& l : w.layers) layers.push_back(layer::pack_all(l, gate, pack));
        unembedding = pack(w.unembedding);
        this->storage = storage;
    }
};

} // namespace actlens
