// actlens/serve/engine.hpp: continuous batching of completion requests over one model.
//
// Requests join a running batch as they arrive and leave it as they finish (README "Serving"). An
// iteration (step()) runs, as one decode_batch step, the whole prompt of every newly admitted request
// (each with its own KV cache, as generate() would) and the next position of every running one: the
// weights are read once for all of them. Each request therefore computes what it computes alone
// (serve::run_alone), bit for bit, whoever shares its batch.
//
// Threads: submit() may be called from any thread. Iterations run either on the engine's own thread
// (start()/stop()) or on a thread of the caller's calling step(); one iteration at a time. Callbacks
// (hooks, on_token) run on the iterating thread. A request's errors (bad prompt, token id, sampling
// options, capture name, a throwing hook or callback) fail that request's future with its
// actlens::error; the others go on.
#pragma once

#include <actlens/error.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/kv_cache.hpp>
#include <actlens/model/sampling.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/serve/capture.hpp>
#include <actlens/serve/decode_batch.hpp>
#include <actlens/serve/request.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace actlens::serve {

struct engine_options {
    /// Most requests decoding together; more wait (their prompts run when a place frees up).
    std::size_t max_batch = 16;
    /// OpenMP threads of the iterating thread's kernels (0: its current setting).
    int threads = 0;
};

template <class T>
class engine {
public:
    /// The model must outlive the engine. Throws actlens::error (arg.101) for max_batch 0 or threads < 0.
    explicit engine(const basic_transformer<T>& model, engine_options options = {})
        : m_model(model), m_options(options) {
        if (options.max_batch == 0) fail(errc::invalid_argument, "engine: max_batch must be positive");
        if (options.threads < 0) fail(errc::invalid_argument, "engine: threads must be >= 0, got {}", options.threads);
    }
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;
    /// Stops the engine's thread after finishing every submitted request. Without a thread, requests
    /// that step() has not finished are dropped (their futures report std::future_errc::broken_promise).
    ~engine() { stop(); }

    /// Queues a request; its result (or its actlens::error) arrives through the future.
    std::future<completion<T>> submit(completion_request<T> request) {
        auto r = std::make_unique<running>();
        r->request = std::move(request);
        std::future<completion<T>> out = r->promise.get_future();
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_pending.push_back(std::move(r));
        }
        m_wake.notify_one();
        return out;
    }

    /// One iteration: admits waiting requests while there is room, then runs their prompts and one
    /// position of every running request as one step. Returns true while requests remain (running
    /// or waiting).
    bool step() {
        std::lock_guard<std::mutex> iterating(m_step_mutex);
        const kernels::detail::scoped_threads threads(m_options.threads);
        admit();
        run_step();
        std::lock_guard<std::mutex> lock(m_mutex);
        m_idle = m_running.empty() && m_pending.empty();
        return !m_idle;
    }

    /// Requests waiting or running.
    std::size_t load() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_pending.size() + m_running_count;
    }

    /// Starts the engine's thread, which iterates while there is work and sleeps otherwise.
    void start() {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_thread.joinable()) return;
        m_stopping = false;
        m_thread = std::thread([this] { loop(); });
    }

    /// Finishes every submitted request, then stops the engine's thread (if started).
    void stop() {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (!m_thread.joinable()) return;
            m_stopping = true;
        }
        m_wake.notify_one();
        m_thread.join();
    }

private:
    // A request in the engine: its options, its result so far and its own decoding state.
    struct running {
        completion_request<T> request;
        std::promise<completion<T>> promise;
        completion<T> result;
        hook_set<T> hooks; // the request's hooks, then its capture's
        position_capture<T> capture;
        kv_cache<T> cache;
        std::unique_ptr<sampler> sample;
        std::size_t steps = 0;
        std::int32_t next = 0;
        bool cancelled = false;
    };

    void loop() {
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(m_mutex);
                m_wake.wait(lock, [this] { return m_stopping || !m_pending.empty() || !m_idle; });
                if (m_stopping && m_pending.empty() && m_idle) return;
            }
            step();
        }
    }

    // Moves waiting requests, as many as the batch has room for, to m_joining (their prompts run in
    // this iteration's step).
    void admit() {
        for (;;) {
            std::unique_ptr<running> r;
            {
                std::lock_guard<std::mutex> lock(m_mutex);
                if (m_pending.empty() || m_running.size() + m_joining.size() >= m_options.max_batch) return;
                r = std::move(m_pending.front());
                m_pending.pop_front();
                ++m_running_count;
            }
            try {
                if (join(*r)) m_joining.push_back(std::move(r));
                else finish(*r);
            } catch (...) {
                fail_request(*r, std::current_exception());
            }
        }
    }

    // What generate() prepares before running the prompt, for one request; false when the request is
    // already complete (no position left to generate). Refuses a prompt token outside the
    // vocabulary or a hook at a point the model lacks, as forward() would, so that the request fails
    // alone.
    bool join(running& r) {
        const model_config& c = m_model.config();
        const completion_request<T>& q = r.request;
        q.sampling.validate();
        r.steps = detail::request_steps(c, q.prompt.size(), q.max_new_tokens);
        r.capture = position_capture<T>(c, q.capture);
        if (q.hooks) r.hooks.merge(*q.hooks);
        r.capture.add_hooks(r.hooks);
        r.sample = std::make_unique<sampler>(q.sampling);
        r.result.tokens = q.prompt;
        r.result.prompt_length = q.prompt.size();
        if (r.steps == 0) return false;
        r.result.tokens.reserve(q.prompt.size() + r.steps);
        r.cache = m_model.make_kv_cache(1, q.prompt.size() + r.steps);
        // The row the request brings to its first step, checked as the step would check it.
        decode_batch<T>::check(c, decode_row<T>{0, &r.cache, &r.hooks, nullptr, &q.prompt}, {"completion"});
        return true;
    }

    // Samples the request's next token from its logits; false when the request is complete.
    bool take(running& r, const T* logits) {
        const std::int32_t token = r.sample->sample(logits, m_model.config().vocab_size);
        r.result.tokens.push_back(token);
        const std::size_t generated = r.result.tokens.size() - r.result.prompt_length;
        const bool cancelled = r.request.on_token && !r.request.on_token(token);
        const auto& stops = r.request.stop_tokens;
        const bool stop = std::find(stops.begin(), stops.end(), token) != stops.end();
        r.next = token;
        r.cancelled = cancelled;
        return !(cancelled || stop || generated == r.steps);
    }

    // The prompts of the joining requests and one position of every running request, as one step;
    // the joining requests then run with the others.
    void run_step() {
        for (auto& r : m_joining) m_running.push_back(std::move(r));
        const std::size_t joined = m_running.size() - m_joining.size();
        m_joining.clear();
        if (m_running.empty()) return;
        m_rows.resize(m_running.size());
        for (std::size_t i = 0; i < m_running.size(); ++i) {
            running& r = *m_running[i];
            m_rows[i] = decode_row<T>{r.next, &r.cache, &r.hooks, nullptr, i < joined ? nullptr : &r.request.prompt};
        }
        tensor_view<const T> logits;
        try {
            logits = m_batch.step(m_model, m_rows);
        } catch (...) { // not one request's fault (the rows were checked when they joined): all fail
            for (auto& r : m_running) fail_request(*r, std::current_exception());
            m_running.clear();
            return;
        }
        std::vector<std::unique_ptr<running>> still;
        for (std::size_t i = 0; i < m_running.size(); ++i) {
            running& r = *m_running[i];
            try {
                if (m_rows[i].error) std::rethrow_exception(m_rows[i].error);
                if (take(r, &logits(i, 0))) {
                    still.push_back(std::move(m_running[i]));
                    continue;
                }
                finish(r);
            } catch (...) {
                fail_request(r, std::current_exception());
            }
        }
        m_running.swap(still);
    }

    void finish(running& r) {
        const std::size_t generated = r.result.tokens.size() - r.result.prompt_length;
        r.result.finish = detail::finish_of(r.request, generated, r.steps, r.result.tokens.back(), r.cancelled);
        r.result.captures = r.capture.results();
        r.promise.set_value(std::move(r.result));
        release();
    }

    void fail_request(running& r, std::exception_ptr error) {
        r.promise.set_exception(std::move(error));
        release();
    }

    void release() {
        std::lock_guard<std::mutex> lock(m_mutex);
        --m_running_count;
    }

    const basic_transformer<T>& m_model;
    engine_options m_options;

    mutable std::mutex m_mutex; // guards m_pending, m_running_count, m_idle, m_stopping, m_thread
    std::condition_variable m_wake;
    std::deque<std::unique_ptr<running>> m_pending;
    std::size_t m_running_count = 0; // admitted and not yet answered
    bool m_idle = true, m_stopping = false;
    std::thread m_thread;

    std::mutex m_step_mutex; // one iteration at a time; guards everything below
    std::vector<std::unique_ptr<running>> m_running;
    std::vector<std::unique_ptr<running>> m_joining; // admitted; their prompts run in this iteration's step
    std::vector<decode_row<T>> m_rows;
    decode_batch<T> m_batch;
};

} // namespace actlens::serve
