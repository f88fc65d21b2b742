// actlens's half of benchmarks/run_vs_llamacpp.sh (issue 11's side-by-side with llama.cpp).
//
//   bench_vs_llamacpp write DIR [--layers 16] [--d 2048] [--heads 32] [--kv-heads 8] [--d-mlp 8192] [--seed 1]
//       A random Llama-shaped model (1B-sized by default: 0.97 B parameters, tied embeddings over the
//       bundled 512-token vocabulary, which llama.cpp needs to load the file) written with save_gguf as
//       DIR/model-f16.gguf, DIR/model-q8_0.gguf, DIR/model-q4_0.gguf, DIR/model-q4_k.gguf and
//       DIR/model-q6_k.gguf (those not there yet).
//   bench_vs_llamacpp run MODEL.gguf --prompt T --decode N --threads K [--seed S] [--weights W]
//       Loads the file (W: automatic, mapped or packed, io::gguf_load_options; mapped-fast: mapped,
//       in fast precision, kernels/precision.hpp), runs a prompt of T
//       random tokens and decodes N more greedily with the KV cache, and prints one line:
//       RESULT runtime=actlens weights=W load_s=... prompt_tok_s=... decode_tok_s=... rss_mb=... peak_rss_mb=...
//       (rss after load; peak over the whole run, from /proc/self/status).
//   bench_vs_llamacpp pages MODEL.gguf [--settle]
//       How much of the file the page cache holds in 2 MiB pages: the file mapped as load_gguf maps it
//       (io::mapped_file, its pages entered into the page tables), then the mapping's FilePmdMapped
//       over its Rss in /proc/self/smaps; one line
//       PAGES file=... huge_pages=<percent> seconds=...
//       --settle first drops the file's cached pages (POSIX_FADV_DONTNEED, which leaves the pages
//       another process maps), so that they are read back in whole folios. Both runtimes multiply
//       in their mapping of the same pages, and a forward walks the page tables of the whole file:
//       a file written moments ago (save_gguf) was 67% in 2 MiB pages here, and llama.cpp's and our
//       decode were 1.2x and 1.4x as fast once it was 98-100%.
//   bench_vs_llamacpp limits MODEL.gguf [--threads K] [--prompts 64,256]
//       The tokens/s no runtime can pass on this file with K threads of this machine, from two
//       figures measured here and now (benchmarks/bench_limits.hpp): the rate K threads read the
//       weights of the file's mapping (decode reads each once a token, so decode tokens/s <= that
//       rate / their bytes) and K threads' FP32 multiply-add peak, which bounds prompts computed
//       with f32 multiply-adds (exact precision; fast precision's bf16 and int8 dot products do 2
//       and 4 times as many a cycle): a prompt of T tokens costs at least 2 FLOPs per weight per
//       token, the unembedding once, and causal attention's 4 heads d_head (T + 1) / 2 per token
//       and layer. One line:
//       LIMITS file=... threads=K read_gb_s=... fma_gflop_s=... weight_mb=... decode_tok_s=...
//              f32_prompt_T64_tok_s=... f32_prompt_T256_tok_s=...
//       The bounds leave out everything else a forward does (norms, the KV cache's reads), so a
//       runtime's fraction of them is what is left to gain at most.
#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include "bench_limits.hpp"
#include "bench_timing.hpp"

#include <fmt/core.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

/// A field of /proc/self/status in MB (VmRSS: now, VmHWM: peak).
double status_mb(const std::string& field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.compare(0, field.size() + 1, field + ":") == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
    return -1.0;
}

int write_models(int argc, char** argv) {
    const std::string dir = argv[2];
    std::size_t layers = 16, d = 2048, heads = 32, kv_heads = 8, d_mlp = 8192;
    std::uint64_t seed = 1;
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&] { return std::stoull(bench::option_value(argc, argv, i)); };
        if (a == "--layers") layers = value();
        else if (a == "--d") d = value();
        else if (a == "--heads") heads = value();
        else if (a == "--kv-heads") kv_heads = value();
        else if (a == "--d-mlp") d_mlp = value();
        else if (a == "--seed") seed = value();
        else {
            fmt::print(stderr, "unknown option {}\n", a);
            return 2;
        }
    }
    const actlens::llama2c_tokenizer vocab = actlens::llama2c_tokenizer::load(ACTLENS_MODEL_DIR "/tok512.bin", 512);
    // llama2.c's layout (adjacent-pair RoPE, tied embeddings), so the rows go to the file unpermuted.
    actlens::model_config c =
        actlens::model_config::llama(layers, d, heads, kv_heads, d_mlp, 512, 4096, actlens::kernels::rope_style::adjacent);
    c.tied_embeddings = true;
    const auto t0 = bench::clock_type::now();
    const actlens::transformer model = actlens::make_random_transformer(c, seed);
    fmt::print("random weights: {:.1f} s\n", bench::ms_since(t0) / 1000);
    for (const auto& [type, name] : {std::pair{actlens::io::ggml_type::f16, "model-f16.gguf"},
                                     std::pair{actlens::io::ggml_type::q8_0, "model-q8_0.gguf"},
                                     std::pair{actlens::io::ggml_type::q4_0, "model-q4_0.gguf"},
                                     std::pair{actlens::io::ggml_type::q4_k, "model-q4_k.gguf"},
                                     std::pair{actlens::io::ggml_type::q6_k, "model-q6_k.gguf"}}) {
        if (std::ifstream(dir + "/" + name).good()) continue; // written before
        actlens::io::gguf_save_options o;
        o.dtype = type;
        o.vocabulary = &vocab;
        o.name = "random-llama";
        const auto t1 = bench::clock_type::now();
        actlens::io::save_gguf(model, dir + "/" + name, o);
        fmt::print("{}: {:.1f} s\n", name, bench::ms_since(t1) / 1000);
    }
    return 0;
}

/// FilePmdMapped / Rss of the mapping that starts at `base`, in percent (-1 when smaps lacks it).
double huge_page_percent(const void* base) {
    std::ifstream in("/proc/self/smaps");
    std::string line;
    bool ours = false;
    double rss = -1, pmd = -1;
    const auto start = reinterpret_cast<std::uintptr_t>(base);
    while (std::getline(in, line)) {
        const std::size_t dash = line.find('-'), space = line.find(' ');
        if (dash != std::string::npos && dash < space && line.find(':') > space) { // "start-end perms ..."
            ours = std::stoull(line.substr(0, dash), nullptr, 16) == start;
            continue;
        }
        if (!ours) continue;
        if (line.rfind("Rss:", 0) == 0) rss = std::stod(line.substr(4));
        if (line.rfind("FilePmdMapped:", 0) == 0) pmd = std::stod(line.substr(14));
    }
    return rss > 0 && pmd >= 0 ? 100.0 * pmd / rss : -1.0;
}

int file_pages(int argc, char** argv) {
    const std::string path = argv[2];
    const bool settle = argc > 3 && std::string(argv[3]) == "--settle";
    const auto t0 = bench::clock_type::now();
    if (settle) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
            fmt::print(stderr, "cannot drop the cached pages of {}\n", path);
            return 1;
        }
        ::close(fd);
    }
    const actlens::io::mapped_file file(path);
    file.populate();
    fmt::print("PAGES file={} huge_pages={:.1f} seconds={:.3f}\n", path, huge_page_percent(file.data()),
               bench::ms_since(t0) / 1000);
    return 0;
}

int run_model(int argc, char** argv) {
    const std::string path = argv[2];
    std::size_t prompt_length = 64, decode = 32;
    int threads = 1;
    std::uint64_t seed = 7;
    std::string weights = "automatic";
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--prompt") prompt_length = std::stoull(bench::option_value(argc, argv, i));
        else if (a == "--decode") decode = std::stoull(bench::option_value(argc, argv, i));
        else if (a == "--threads") threads = std::stoi(bench::option_value(argc, argv, i));
        else if (a == "--seed") seed = std::stoull(bench::option_value(argc, argv, i));
        else if (a == "--weights") weights = bench::option_value(argc, argv, i);
        else {
            fmt::print(stderr, "unknown option {}\n", a);
            return 2;
        }
    }
    actlens::io::gguf_load_options load;
    const bool fast = weights == "mapped-fast";
    if (weights == "mapped" || fast)
        load.weights = actlens::io::gguf_weights::mapped;
    else if (weights == "packed")
        load.weights = actlens::io::gguf_weights::packed;
    else if (weights != "automatic") {
        fmt::print(stderr, "--weights {}: expected automatic, mapped, mapped-fast or packed\n", weights);
        return 2;
    }
    const auto t0 = bench::clock_type::now();
    actlens::transformer model = actlens::io::load_gguf(path, load);
    if (fast) model.set_precision(actlens::kernels::precision::fast);
    const double load_s = bench::ms_since(t0) / 1000;
    const double rss_mb = status_mb("VmRSS");
    std::vector<std::int32_t> prompt(prompt_length);
    // The same ids as llamacpp_bench.mjs: 3 + (7919 i + 104729 seed) mod (V - 3).
    for (std::size_t i = 0; i < prompt_length; ++i)
        prompt[i] = std::int32_t(3 + (7919 * i + 104729 * seed) % (model.config().vocab_size - 3));
    actlens::generate_options<float> o;
    o.max_new_tokens = decode;
    o.threads = threads;
    // The first token comes after the prompt's forward; the others are one decode step each.
    bench::clock_type::time_point first{}, last{};
    std::size_t count = 0;
    o.on_token = [&](std::size_t, std::int32_t) {
        last = bench::clock_type::now();
        if (count++ == 0) first = last;
        return true;
    };
    const auto t1 = bench::clock_type::now();
    actlens::generate(model, prompt, o);
    const double prompt_s = std::chrono::duration<double>(first - t1).count();
    const double decode_s = std::chrono::duration<double>(last - first).count();
    fmt::print("RESULT runtime=actlens weights={} load_s={:.3f} prompt_tok_s={:.2f} decode_tok_s={:.2f} rss_mb={:.0f} "
               "peak_rss_mb={:.0f}\n",
               weights, load_s, double(prompt_length) / prompt_s, double(count - 1) / decode_s, rss_mb, status_mb("VmHWM"));
    return 0;
}

int file_limits(int argc, char** argv) {
    const std::string path = argv[2];
    int threads = 1;
    std::vector<std::size_t> prompts{64, 256};
    for (int i = 3; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads") threads = std::stoi(bench::option_value(argc, argv, i));
        else if (a == "--prompts") prompts = bench::parse_sizes(bench::option_value(argc, argv, i));
        else {
            fmt::print(stderr, "unknown option {}\n", a);
            return 2;
        }
    }
    if (threads < 1) {
        fmt::print(stderr, "--threads {}: expected at least 1\n", threads);
        return 2;
    }
    const actlens::io::gguf_file file(path);
    const actlens::model_config config = actlens::io::gguf_model_config(file);
    // What a token reads and multiplies: every matrix but the embedding table, of which a token
    // reads one row, unless the table is also the unembedding (tied: no output.weight).
    const bool tied = file.find_tensor("output.weight") == nullptr;
    const std::string unembedding = tied ? "token_embd.weight" : "output.weight";
    std::vector<std::pair<const unsigned char*, std::size_t>> ranges;
    double projection_elements = 0, unembedding_elements = 0, bytes = 0;
    for (const auto& t : file.tensors()) {
        if (t.ne.size() < 2 || (t.name == "token_embd.weight" && !tied)) continue;
        ranges.emplace_back(reinterpret_cast<const unsigned char*>(file.data(t)), t.bytes);
        bytes += double(t.bytes);
        (t.name == unembedding ? unembedding_elements : projection_elements) += double(t.elements);
    }
    file.populate();
    const double read = bench::read_gb_per_s(ranges, threads), peak = bench::fma_peak_gflops(threads);
    std::string line = fmt::format("LIMITS file={} threads={} read_gb_s={:.1f} fma_gflop_s={:.0f} weight_mb={:.0f} "
                                   "decode_tok_s={:.2f}",
                                   path, threads, read, peak, bytes / 1048576, read * 1e9 / bytes);
    for (const std::size_t T : prompts) {
        const double attention = 4.0 * double(config.n_layers * config.n_heads * config.d_head) * double(T) *
                                 double(T + 1) / 2;
        const double flops = 2 * projection_elements * double(T) + 2 * unembedding_elements + attention;
        line += fmt::format(" f32_prompt_T{}_tok_s={:.1f}", T, peak * 1e9 * double(T) / flops);
    }
    fmt::print("{}\n", line);
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    const std::string mode = argc > 2 ? argv[1] : "";
    if (mode == "write") return write_models(argc, argv);
    if (mode == "run") return run_model(argc, argv);
    if (mode == "pages") return file_pages(argc, argv);
    if (mode == "limits") return file_limits(argc, argv);
    fmt::print(stderr, "usage: bench_vs_llamacpp write DIR [options] | run MODEL.gguf [--prompt T] [--decode N] "
                       "[--threads K] [--weights automatic|mapped|mapped-fast|packed] | pages MODEL.gguf [--settle] | "
                       "limits MODEL.gguf [--threads K] [--prompts 64,256]\n");
    return 2;
} catch (const std::exception& e) { // a file that does not load, a bad number
    fmt::print(stderr, "{}\n", e.what());
    return 1;
}
