// actlens/model/generate.hpp: autoregressive generation with a KV cache, hooks and streaming.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/sampling.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace actlens {

/// Options of a generation.
template <class T>
struct generate_options {
    std::size_t max_new_tokens = 64;
    sampling_options sampling;
    /// Hooks active during the prompt and every generated step; hook_context::position_offset tells
    /// a hook which absolute positions it sees (e.g. to steer generated tokens only).
    const hook_set<T>* hooks = nullptr;
    /// A row ends when it produces one of these (the stop token is kept in the output).
    std::vector<std::int32_t> stop_tokens;
    /// Called for every generated token, in order; return false to stop the whole generation (the
    /// token just passed is kept; nothing more is computed).
    std::function<bool(std::size_t row, std::int32_t token)> on_token;
    /// OpenMP threads of this call's kernels (0: the calling thread's current setting). Set on the
    /// calling thread only and restored on return; results do not depend on it.
    int threads = 0;
};

/// Generates continuations of `prompts` ([B, T] rows of equal length, or [T]) in the caller's
/// workspace and KV cache: after a first call of the largest shape, further calls allocate no
/// activation or cache memory (the cache is replaced only when its batch, layers or capacity do not
/// fit, and is cleared otherwise). Returns, per row, the prompt followed by the generated tokens.
/// Generation stops at max_new_tokens, at a stop token (per row), when on_token returns false, or at
/// the end of the model's context. Row b samples with seed `sampling.seed + b`, so rows are
/// independent of their neighbours. Thread-safe with respect to the model; `ws` and `cache` belong
/// to one call at a time.
template <class T>
std::vector<std::vector<std::int32_t>> generate(const basic_transformer<T>& model, workspace<T>& ws,
                                                kv_cache<T>& cache, tensor_view<const std::int32_t> prompts,
                                                const generate_options<T>& options = {}) {
    options.sampling.validate();
    if (options.threads < 0) fail(errc::invalid_argument, "generate: threads must be >= 0, got {}", options.threads);
    if (prompts.rank() == 1) prompts = prompts.reshaped({1, prompts.extent(0)});
    if (prompts.rank() != 2) fail(errc::shape_mismatch, "generate: prompts must be [T] or [B, T], got {}",
                                  prompts.shape().to_string());
    const std::size_t batch = prompts.extent(0), length = prompts.extent(1);
    if (batch == 0 || length == 0) fail(errc::empty_prompt, "generate: the prompt is empty");
    const model_config& c = model.config();
    if (length > c.max_seq_len)
        fail(errc::context_overflow, "generate: prompt of {} tokens exceeds the context of {}", length, c.max_seq_len);
    const std::size_t steps = std::min(options.max_new_tokens, c.max_seq_len - length);

    std::vector<std::vector<std::int32_t>> out(batch);
    std::vector<sampler> samplers;
    for (std::size_t b = 0; b < batch; ++b) {
        out[b].reserve(length + steps);
        for (std::size_t t = 0; t < length; ++t) out[b].push_back(prompts(b, t));
        sampling_options s = options.sampling;
        s.seed += b;
        samplers.emplace_back(s);
    }
    if (steps == 0) return out;

    const kernels::detail::scoped_threads threads(options.threads);
    if (cache.batch() != batch || cache.n_layers() != c.n_layers || cache.kv_width() != c.n_kv_heads * c.d_head ||
        cache.capacity() < length + steps)
        cache = model.make_kv_cache(batch, std::max(length + steps, cache.capacity()));
    cache.clear();
    run_options<T> run;
    run.hooks = options.hooks;
    run.cache = &cache;
    run.last_position_only = true;
    std::vector<bool> done(batch, false);
    std::vector<std::int32_t> next(batch);

    tensor_view<const T> logits = model.forward_into(ws, prompts, run);
    for (std::size_t step = 0; step < steps; ++step) {
        bool any_running = false, stop_all = false;
        for (std::size_t b = 0; b < batch; ++b) {
            const std::int32_t token = samplers[b].sample(&logits(b, 0, 0), c.vocab_size);
            next[b] = token;
            if (done[b]) continue;
            out[b].push_back(token);
            if (options.on_token && !options.on_token(b, token)) stop_all = true;
            if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end())
                done[b] = true;
            any_running = any_running || !done[b];
        }
        if (stop_all || !any_running || step + 1 == steps) break;
        // Finished rows keep being fed (their outputs are dropped) so the batch stays rectangular.
        logits = model.forward_into(ws, tensor_view<const std::int32_t>(next.data(), {batch, 1}), run);
    }
    return out;
}

/// As above with a workspace and KV cache of its own (allocated for this call).
template <class T>
std::vector<std::vector<std::int32_t>> generate(const basic_transformer<T>& model,
                                                tensor_view<const std::int32_t> prompts,
                                                const generate_options<T>& options = {}) {
    workspace<T> ws;
    kv_cache<T> cache;
    return generate(model, ws, cache, prompts, options);
}

/// One prompt: returns the prompt followed by the generated tokens.
template <class T>
std::vector<std::int32_t> generate(const basic_transformer<T>& model, const std::vector<std::int32_t>& prompt,
                                   const generate_options<T>& options = {}) {
    return generate(model, tensor_view<const std::int32_t>(prompt.data(), {prompt.size()}), options).front();
}

/// One prompt in the caller's workspace and KV cache (see above).
template <class T>
std::vector<std::int32_t> generate(const basic_transformer<T>& model, workspace<T>& ws, kv_cache<T>& cache,
                                   const std::vector<std::int32_t>& prompt, const generate_options<T>& options = {}) {
    return generate(model, ws, cache, tensor_view<const std::int32_t>(prompt.data(), {prompt.size()}), options)
        .front();
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE std::vector<std::vector<std::int32_t>> generate(const transformer&, workspace<float>&,
                                                                        kv_cache<float>&,
                                                                        tensor_view<const std::int32_t>,
                                                                        const generate_options<float>&);
ACTLENS_EXTERN_TEMPLATE std::vector<std::vector<std::int32_t>> generate(const transformer&,
                                                                        tensor_view<const std::int32_t>,
                                                                        const generate_options<float>&);
ACTLENS_EXTERN_TEMPLATE std::vector<std::int32_t> generate(const transformer&, const std::vector<std::int32_t>&,
                                                           const generate_options<float>&);
ACTLENS_EXTERN_TEMPLATE std::vector<std::int32_t> generate(const transformer&, workspace<float>&, kv_cache<float>&,
                                                           const std::vector<std::int32_t>&,
                                                           const generate_options<float>&);
#endif

} // namespace actlens
