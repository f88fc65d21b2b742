// tests/fuzz/fuzz_common.hpp: what the libFuzzer harnesses share.
//
// A harness hands one input to a parser and lets only actlens::error pass: any other exception, a
// sanitizer report, a leak or an allocation over libFuzzer's -malloc_limit_mb is a finding. The
// parsers read files, so inputs are written to a scratch directory (in /dev/shm when it exists, so
// no input touches the disk) that lives as long as the process.
#pragma once

#include <actlens/error.hpp>
#include <actlens/model/transformer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace fuzz {

/// This process's scratch directory, made on first use.
inline const std::string& scratch_dir() {
    static const std::string dir = [] {
        std::string pattern = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/actlens_fuzz_XXXXXX");
        if (!mkdtemp(pattern.data())) std::abort();
        return pattern;
    }();
    return dir;
}

/// Writes `bytes` to scratch_dir()/name and returns the path.
inline std::string write_file(const std::string& name, std::string_view bytes) {
    const std::string path = scratch_dir() + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
    std::fclose(f);
    return path;
}

/// An input holding two files: a 4-byte little-endian length, then that many bytes of the first
/// file (fewer if the input ends), then the second file. make_seeds.py writes seeds this way.
struct two_files {
    std::string_view first, second;
};

inline two_files split_two(const std::uint8_t* data, std::size_t size) {
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    if (size < 4) return {all, {}};
    const std::size_t length = std::size_t(data[0]) | std::size_t(data[1]) << 8 | std::size_t(data[2]) << 16 |
                               std::size_t(data[3]) << 24;
    const std::string_view rest = all.substr(4);
    const std::size_t cut = length < rest.size() ? length : rest.size();
    return {rest.substr(0, cut), rest.substr(cut)};
}

/// Runs `f`, swallowing actlens::error (the documented answer to a bad file) and nothing else.
template <class F>
void expect_clean(F&& f) {
    try {
        f();
    } catch (const actlens::error&) {
    }
}

// What a loaded model or tokenizer is asked to do, so that a file which loads but lies (shapes that
// disagree with the config, ids past the vocabulary) is caught where it would be used.

/// Converts every tensor of a weight file (gguf_file, safetensors_file) to float and reads its last
/// element; a tensor that does not convert is reported with actlens::error like the file itself.
template <class File>
void read_every_tensor(const File& file) {
    for (const auto& t : file.tensors())
        expect_clean([&] {
            actlens::tensor<float> storage;
            const actlens::tensor_view<const float> v = file.float_view(t.name, storage);
            volatile float sink = v.size() ? v.data()[v.size() - 1] : 0.0f;
            (void)sink;
        });
}

/// Runs two positions through a loaded model when it is small enough to run in a moment.
inline void exercise(const actlens::transformer& model) {
    const actlens::model_config& c = model.config();
    const double work = double(c.n_layers) * double(c.d_model) * double(c.d_mlp + 4 * c.d_model) +
                        double(c.vocab_size) * double(c.d_model);
    if (work > 5e7 || c.vocab_size < 2 || c.max_seq_len < 2) return;
    (void)model.forward(std::vector<std::int32_t>{0, std::int32_t(c.vocab_size - 1)});
}

/// Encodes a fixed text and the input's own first bytes, and decodes the ids back.
template <class Tokenizer>
void exercise(const Tokenizer& t, std::string_view input) {
    for (std::string_view text : {std::string_view("Once upon a time, 42 caf\xc3\xa9s\n<|endoftext|> \xff"),
                                  input.substr(0, 64)})
        (void)t.decode(t.encode(text));
}

} // namespace fuzz
