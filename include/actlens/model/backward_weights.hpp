// actlens/model/backward_weights.hpp: the transposed projections a fast backward pass multiplies with.
//
// The backward's input gradients are dx = dy * W for every projection W [out, in]. As a forward
// product that is y = x * (W^T)^T, so packing W^T once, as the model packs W for its forward
// (model/weights.hpp), lets the backward use the forward's GEMM with its streamed, prefetched,
// huge-page panels: ~180-200 GFLOP/s per core against ~90-135 for multiplying with W in place
// (kernels/gemm_input_grad.hpp), whose column slices of a row-major W stream poorly from memory
// when the product has few rows. The price is one more copy of every projection (not of the
// embeddings), made once per model; pass it in backward_options::weights to every backward that
// should use it. W^T keeps W's element type (f32, or the 16-bit values of an F16 / BF16 model,
// transposed as bits: exact, and half the memory; without backward_weights such a model's backward
// reads the forward's panels, kernels/gemm_panel_grad.hpp). Only float models pack anything (the
// packed GEMM is float's, with its instruction set chosen at run time, core/cpu.hpp); for double the
// object stays empty and the backward multiplies with W in place, as without it. Quantised
// projections (Q8_0, Q4_0, Q4_K, Q6_K) are not transposed: their W^T reads W's rows in place
// (kernels::packed_weight::mapped_transpose), as the backward does without backward_weights.
#pragma once

#include <actlens/core/memory.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

namespace actlens {

template <class T>
struct backward_weights {
    using layer = packed_layer<T>; ///< each projection packs W^T [in, out]
    std::vector<layer> layers;
    /// The packed storage of the model they were made from (packed_weights::storage): the backward
    /// checks made_from(model). Held weakly, so that it does not keep a destroyed model's panels.
    std::weak_ptr<const void> source;

    backward_weights() = default;

    /// Packs the transpose of every projection of `m` (float only; otherwise empty).
    explicit backward_weights(const basic_transformer<T>& m) {
        if constexpr (!(std::is_same_v<T, float> && kernels::detail::has_fast_sgemm)) {
            (void)m;
        } else {
            using packed = kernels::packed_weight<T>;
            const model_config& c = m.config();
            const bool gate = c.gated_mlp();
            // Bytes of W^T's panels, rounded to 64 so that every weight's panels stay aligned.
            auto size = [](const weight_tensor<T>& w) {
                if (kernels::is_quantised(w.format())) return std::size_t(0);
                return (packed::packed_bytes(w.extent(1), w.extent(0), w.type()) + 63) / 64 * 64;
            };
            std::size_t total = 0;
            for (const layer_weights<T>& l : m.weights().layers) total += layer::total_size(l, gate, size);
            std::shared_ptr<unsigned char> storage =
                kernels::allocate_packed_storage<unsigned char>(std::max<std::size_t>(total, 64));
            std::size_t offset = 0;
            std::vector<unsigned char> transposed; // W^T of one projection at a time (packing copies it)
            auto pack = [&](const weight_tensor<T>& w) {
                // Quantised rows have no panels: W^T reads them in place (kernels/gemm_rows.hpp).
                if (kernels::is_quantised(w.format()))
                    return packed::mapped_transpose(w.raw(), w.format(), w.extent(0), w.extent(1), nullptr);
                const std::size_t out = w.extent(0), in = w.extent(1), bytes = dtype_size(w.type());
                const auto* source = static_cast<const unsigned char*>(w.raw());
                transposed.resize(out * in * bytes);
                for (std::size_t o = 0; o < out; ++o)
                    for (std::size_t i = 0; i < in; ++i)
                        std::memcpy(&transposed[(i * out + o) * bytes], source + (o * in + i) * bytes, bytes);
                packed p(transposed.data(), w.type(), in, out, storage.get() + offset, storage);
                // As the model does, unless the forward reads these rows in place.
                if (w.in_mapped_file() && !w.multiplied_in_place())
                    actlens::detail::drop_file_pages(source, out * in * bytes);
                offset += size(w);
                return p;
            };
            layers.reserve(c.n_layers);
            for (const layer_weights<T>& l : m.weights().layers) layers.push_back(layer::pack_all(l, gate, pack));
            source = m.packed().storage;
        }
    }

    bool empty() const noexcept { return layers.empty(); }

    /// Whether these were made from `m`, the same model even when moved since; false for another
    /// model, also one built where a destroyed one was.
    template <class U>
    bool made_from(const basic_transformer<U>& m) const noexcept {
        const std::shared_ptr<const void>& s = m.packed().storage;
        return s && !source.owner_before(s) && !s.owner_before(source);
    }
};

} // namespace actlens
