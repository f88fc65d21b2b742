// actlens/serve/request.hpp: what a serving request asks for and what it gets back, and the run of
// one request alone with generate(): the result every batched run of it must equal (README "Serving").
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/sampling.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/serve/capture.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace actlens::serve {

/// One completion to compute.
template <class T>
struct completion_request {
    std::vector<std::int32_t> prompt;
    std::size_t max_new_tokens = 64;
    /// Sampling of this request (its seed included), as generate()'s row 0.
    sampling_options sampling;
    /// The request ends when it produces one of these (kept in the output).
    std::vector<std::int32_t> stop_tokens;
    /// This request's hooks (steering, control vectors, ...); shared, never modified by the engine.
    /// They run on the engine's thread and see this request's rows only, as in a run alone.
    std::shared_ptr<const hook_set<T>> hooks;
    /// Hook points (TransformerLens names) whose activations come back with the result.
    std::vector<std::string> capture;
    /// Called with each generated token, in order, on the engine's thread; false ends the request.
    std::function<bool(std::int32_t token)> on_token;
};

/// Why a completion ended.
enum class finish_reason {
    length,     ///< max_new_tokens reached
    stop_token, ///< one of the stop tokens was produced
    context,    ///< the model's context is full
    cancelled   ///< on_token returned false
};

inline const char* to_string(finish_reason r) noexcept {
    switch (r) {
    case finish_reason::length: return "length";
    case finish_reason::stop_token: return "stop";
    case finish_reason::context: return "context";
    case finish_reason::cancelled: return "cancelled";
    }
    return "?";
}

/// What a request gets back.
template <class T>
struct completion {
    std::vector<std::int32_t> tokens; ///< the prompt followed by the generated tokens
    std::size_t prompt_length = 0;
    finish_reason finish = finish_reason::length;
    /// The captured activations, [positions, ...] each, in the order of completion_request::capture.
    std::vector<captured<T>> captures;
};

namespace detail {

/// The generated tokens a request may produce: max_new_tokens, bounded by the context left.
/// Throws actlens::error for an empty prompt (generate.502) or one longer than the context
/// (generate.503), as generate() does.
inline std::size_t request_steps(const model_config& c, std::size_t prompt_length, std::size_t max_new_tokens) {
    if (prompt_length == 0) fail(errc::empty_prompt, "completion: the prompt is empty");
    if (prompt_length > c.max_seq_len)
        fail(errc::context_overflow, "completion: prompt of {} tokens exceeds the context of {}", prompt_length,
             c.max_seq_len);
    return std::min(max_new_tokens, c.max_seq_len - prompt_length);
}

/// Why a request that produced `generated` of `steps` tokens, the last being `token`, ends.
template <class T>
finish_reason finish_of(const completion_request<T>& r, std::size_t generated, std::size_t steps, std::int32_t token,
                        bool cancelled) {
    if (cancelled) return finish_reason::cancelled;
    if (generated > 0 && std::find(r.stop_tokens.begin(), r.stop_tokens.end(), token) != r.stop_tokens.end())
        return finish_reason::stop_token;
    return steps < r.max_new_tokens ? finish_reason::context : finish_reason::length;
}

} // namespace detail

/// Runs `request` alone with generate() (in the caller's workspace and cache): the reference result of
/// the request. Throws actlens::error for a bad request (sampling, prompt, hooks, capture names).
template <class T>
completion<T> run_alone(const basic_transformer<T>& model, const completion_request<T>& request, workspace<T>& ws,
                        kv_cache<T>& cache, int threads = 0) {
    const std::size_t steps = detail::request_steps(model.config(), request.prompt.size(), request.max_new_tokens);
    const position_capture<T> capture(model.config(), request.capture);
    hook_set<T> hooks;
    if (request.hooks) hooks.merge(*request.hooks);
    capture.add_hooks(hooks);
    bool cancelled = false;
    generate_options<T> o;
    o.max_new_tokens = request.max_new_tokens;
    o.sampling = request.sampling;
    o.hooks = &hooks;
    o.stop_tokens = request.stop_tokens;
    o.threads = threads;
    if (request.on_token)
        o.on_token = [&](std::size_t, std::int32_t token) { return !(cancelled = !request.on_token(token)); };
    completion<T> out;
    out.tokens = generate(model, ws, cache, request.prompt, o);
    out.prompt_length = request.prompt.size();
    out.finish = detail::finish_of(request, out.tokens.size() - out.prompt_length, steps, out.tokens.back(), cancelled);
    out.captures = capture.results();
    return out;
}

/// As above with a workspace and cache of its own.
template <class T>
completion<T> run_alone(const basic_transformer<T>& model, const completion_request<T>& request, int threads = 0) {
    workspace<T> ws;
    kv_cache<T> cache;
    return run_alone(model, request, ws, cache, threads);
}

} // namespace actlens::serve
