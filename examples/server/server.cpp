// actlens example server: completions over HTTP with per-request steering and activation capture,
// batched by actlens::serve::engine (README "Serving").
//
//   actlens_server [--model FILE] [--tokenizer FILE] [--random gpt2-small] [--host H] [--port P]
//                  [--max-batch N] [--threads N] [--http-threads N]
//
// With no arguments it serves the bundled stories260K model on 127.0.0.1:8080. --port 0 picks a free
// port; the first line printed is "listening on HOST:PORT". --random gpt2-small serves a GPT-2-small
// shaped model with random weights (for load tests; prompts are then token ids, or UTF-8 bytes).
//
//   POST /v1/completions  {"prompt": "Once upon a time" | "prompt_tokens": [1, 2, 3],
//                          "max_tokens": 16, "temperature": 0, "top_k": 0, "top_p": 1, "seed": 0,
//                          "stop": [2],
//                          "steering": {"vector": "dir.npy" | [0.1, ...], "hook": "blocks.2.hook_resid_pre",
//                                       "layers": [2, 3], "alpha": 4},
//                          "control_vector": "cv.gguf", "control_strength": 1,
//                          "capture": ["blocks.1.hook_resid_post"],
//                          "solo": false}
//     -> {"model", "tokens": [generated ids], "text", "finish_reason", "usage": {...},
//         "captures": {"name": {"shape": [...], "npy_base64": "..."}}}
//     "solo": true runs the request alone with generate() instead of in the batch (the reference a
//     batched response must equal; the load test uses it).
//   GET /v1/models, GET /healthz
// A bad request gets HTTP 400 with {"error": {"id": "actlens.<area>.<n>", "message": ...}}; a request
// never stops the server.
#include <actlens/actlens.hpp>
#include <actlens/serve/engine.hpp>
#include <actlens/serve/request.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <fmt/core.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using json = nlohmann::json;
using actlens::errc;
using actlens::fail;

namespace {

struct arguments {
    std::string model = ACTLENS_MODEL_DIR "/stories260K.bin";
    std::string tokenizer = ACTLENS_MODEL_DIR "/tok512.bin";
    std::string random; // "gpt2-small": random weights of that shape
    std::string host = "127.0.0.1";
    int port = 8080;
    std::size_t max_batch = 16;
    int threads = 0;
    int http_threads = 32;
};

arguments parse_arguments(int argc, char** argv) {
    arguments a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail(errc::invalid_argument, "option {} needs a value", flag);
            return argv[++i];
        };
        auto integer = [&](const std::string& text) {
            char* end = nullptr;
            const long v = std::strtol(text.c_str(), &end, 10);
            if (end == text.c_str() || *end != '\0' || v < 0)
                fail(errc::invalid_argument, "option {}: '{}' is not a count", flag, text);
            return v;
        };
        if (flag == "--model") a.model = value();
        else if (flag == "--tokenizer") a.tokenizer = value();
        else if (flag == "--random") a.random = value();
        else if (flag == "--host") a.host = value();
        else if (flag == "--port") a.port = int(integer(value()));
        else if (flag == "--max-batch") a.max_batch = std::size_t(integer(value()));
        else if (flag == "--threads") a.threads = int(integer(value()));
        else if (flag == "--http-threads") a.http_threads = int(integer(value()));
        else if (flag == "--help" || flag == "-h") {
            fmt::print("usage: actlens_server [--model FILE] [--tokenizer FILE] [--random gpt2-small] [--host H]\n"
                       "                      [--port P] [--max-batch N] [--threads N] [--http-threads N]\n");
            std::exit(0);
        } else {
            fail(errc::invalid_argument, "unknown option '{}' (try --help)", flag);
        }
    }
    if (!a.random.empty() && a.random != "gpt2-small")
        fail(errc::invalid_argument, "--random: '{}' is not a known shape (gpt2-small)", a.random);
    return a;
}

std::string base64(const std::string& bytes) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 3; ++k) v = v << 8 | (k < n ? std::uint8_t(bytes[i + k]) : 0u);
        for (std::size_t k = 0; k < 4; ++k) out += k <= n ? table[(v >> (18 - 6 * k)) & 63] : '=';
    }
    return out;
}

// The .npy bytes of a tensor, written by io/npy.hpp through a private temporary file.
std::string npy_bytes(const actlens::tensor<float>& t) {
    char path[] = "/tmp/actlens_server_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) fail(errc::file_open, "capture: cannot create a temporary file");
    close(fd);
    actlens::io::save_npy(path, t);
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::remove(path);
    return bytes;
}

// A JSON field of an expected type, or a 400 naming it.
template <class V>
V field(const json& body, const char* name, V fallback) {
    const auto it = body.find(name);
    if (it == body.end() || it->is_null()) return fallback;
    try {
        return it->get<V>();
    } catch (const json::exception&) {
        fail(errc::invalid_argument, "request: field '{}' has the wrong type ({})", name, it->type_name());
    }
}

class server {
public:
    explicit server(const arguments& args) : m_args(args) {
        if (args.random == "gpt2-small") {
            m_name = "random-gpt2-small";
            m_model = std::make_unique<actlens::transformer>(
                actlens::make_random_transformer<float>(actlens::model_config::gpt2(12, 768, 12, 50257, 1024), 2024));
        } else {
            m_name = args.model.substr(args.model.find_last_of('/') + 1);
            m_model = std::make_unique<actlens::transformer>(actlens::load_model(args.model));
            m_tokenizer.emplace(actlens::load_tokenizer(args.tokenizer, m_model->config().vocab_size));
        }
        actlens::serve::engine_options options;
        options.max_batch = args.max_batch;
        options.threads = args.threads;
        m_engine = std::make_unique<actlens::serve::engine<float>>(*m_model, options);
        m_engine->start();
    }

    void routes(httplib::Server& http) {
        http.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(json{{"status", "ok"}, {"load", m_engine->load()}}.dump(), "application/json");
        });
        http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
            const actlens::model_config& c = m_model->config();
            const json model = {{"id", m_name},
                                {"object", "model"},
                                {"family", c.family},
                                {"n_layers", c.n_layers},
                                {"d_model", c.d_model},
                                {"vocab_size", c.vocab_size},
                                {"context_length", c.max_seq_len},
                                {"tokenizer", m_tokenizer ? "model" : "utf-8 bytes"}};
            res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), "application/json");
        });
        http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
            try {
                res.set_content(complete(json::parse(req.body)).dump(), "application/json");
            } catch (const actlens::error& e) {
                reply_error(res, 400, e.code(), e.what());
            } catch (const json::exception& e) {
                reply_error(res, 400, errc::invalid_argument, std::string("request: bad JSON: ") + e.what());
            } catch (const std::exception& e) {
                res.status = 500;
                res.set_content(json{{"error", {{"id", "internal"}, {"message", e.what()}}}}.dump(), "application/json");
            }
        });
    }

private:
    static void reply_error(httplib::Response& res, int status, errc code, const std::string& message) {
        res.status = status;
        const std::string id = fmt::format("actlens.{}.{}", actlens::errc_area(code), static_cast<int>(code));
        res.set_content(json{{"error", {{"id", id}, {"message", message}}}}.dump(), "application/json");
    }

    std::vector<std::int32_t> prompt_of(const json& body) const {
        if (body.contains("prompt_tokens")) return field(body, "prompt_tokens", std::vector<std::int32_t>{});
        const std::string text = field(body, "prompt", std::string());
        if (m_tokenizer) return m_tokenizer->encode(text, /*bos=*/true);
        return std::vector<std::int32_t>(text.begin(), text.end()); // bytes, for models without a tokenizer
    }

    // The request's steering and control-vector hooks (null when it has none).
    std::shared_ptr<const actlens::hook_set<float>> hooks_of(const json& body) const {
        auto hooks = std::make_shared<actlens::hook_set<float>>();
        if (body.contains("steering")) {
            const json& s = body.at("steering");
            if (!s.is_object()) fail(errc::invalid_argument, "request: 'steering' must be an object");
            actlens::steering_vector<float> v;
            const auto layers = field(s, "layers", std::vector<int>{});
            v.point = actlens::hook_point::parse(
                field(s, "hook", fmt::format("blocks.{}.hook_resid_pre", layers.empty() ? 0 : layers.front())));
            if (!s.contains("vector")) fail(errc::invalid_argument, "request: 'steering' needs a 'vector'");
            if (s.at("vector").is_string()) {
                v.direction = actlens::io::load_npy<float>(s.at("vector").get<std::string>());
            } else {
                const auto values = field(s, "vector", std::vector<float>{});
                v.direction = actlens::tensor<float>({values.size()});
                std::copy(values.begin(), values.end(), v.direction.data());
            }
            if (v.direction.rank() != 1 || v.direction.size() != m_model->config().d_model)
                fail(errc::shape_mismatch, "request: steering vector has shape {}, the model's d_model is {}",
                     v.direction.shape().to_string(), m_model->config().d_model);
            actlens::steering_options o;
            o.alpha = field(s, "alpha", 1.0);
            o.layers = layers;
            actlens::add_steering(*hooks, v, o);
        }
        if (body.contains("control_vector")) {
            const actlens::control_vector cv = actlens::load_control_vector(field(body, "control_vector", std::string()));
            actlens::add_control_vector_hooks(*hooks, cv, field(body, "control_strength", 1.0f));
        }
        if (hooks->empty()) return nullptr;
        return hooks;
    }

    json complete(const json& body) {
        if (!body.is_object()) fail(errc::invalid_argument, "request: the body must be a JSON object");
        actlens::serve::completion_request<float> r;
        r.prompt = prompt_of(body);
        r.max_new_tokens = field(body, "max_tokens", std::size_t(16));
        r.sampling.temperature = field(body, "temperature", 0.0);
        r.sampling.top_k = field(body, "top_k", std::size_t(0));
        r.sampling.top_p = field(body, "top_p", 1.0);
        r.sampling.seed = field(body, "seed", std::uint64_t(0));
        r.stop_tokens = field(body, "stop", std::vector<std::int32_t>{});
        if (!body.contains("stop") && m_tokenizer && m_tokenizer->eos_id()) r.stop_tokens = {*m_tokenizer->eos_id()};
        r.capture = field(body, "capture", std::vector<std::string>{});
        r.hooks = hooks_of(body);
        const actlens::serve::completion<float> c = field(body, "solo", false)
                                                        ? actlens::serve::run_alone(*m_model, r, m_args.threads)
                                                        : m_engine->submit(r).get();
        const std::vector<std::int32_t> generated(c.tokens.begin() + std::ptrdiff_t(c.prompt_length), c.tokens.end());
        json out = {{"object", "text_completion"},
                    {"model", m_name},
                    {"tokens", generated},
                    {"finish_reason", actlens::serve::to_string(c.finish)},
                    {"usage",
                     {{"prompt_tokens", c.prompt_length},
                      {"completion_tokens", generated.size()},
                      {"total_tokens", c.tokens.size()}}}};
        if (m_tokenizer) out["text"] = m_tokenizer->decode(generated);
        json captures = json::object();
        for (const auto& k : c.captures) {
            std::vector<std::size_t> shape;
            for (int a = 0; a < k.values.rank(); ++a) shape.push_back(k.values.extent(a));
            captures[k.name] = {{"shape", shape}, {"npy_base64", base64(npy_bytes(k.values))}};
        }
        if (!c.captures.empty()) out["captures"] = captures;
        return out;
    }

    arguments m_args;
    std::string m_name;
    std::unique_ptr<actlens::transformer> m_model;
    std::optional<actlens::tokenizer> m_tokenizer;
    std::unique_ptr<actlens::serve::engine<float>> m_engine;
};

} // namespace

int main(int argc, char** argv) {
    try {
        const arguments args = parse_arguments(argc, argv);
        server s(args);
        httplib::Server http;
        const std::size_t pool = std::size_t(std::max(1, args.http_threads));
        http.new_task_queue = [pool] { return new httplib::ThreadPool(pool); };
        s.routes(http);
        const int port = args.port == 0 ? http.bind_to_any_port(args.host) : args.port;
        if (args.port != 0 && !http.bind_to_port(args.host, port))
            fail(errc::file_open, "cannot listen on {}:{}", args.host, port);
        if (port < 0) fail(errc::file_open, "cannot listen on {}", args.host);
        fmt::print("listening on {}:{}\n", args.host, port);
        std::fflush(stdout);
        return http.listen_after_bind() ? 0 : 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "actlens_server: {}\n", e.what());
        return 1;
    }
}
