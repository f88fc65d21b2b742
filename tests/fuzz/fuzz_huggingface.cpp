// tests/fuzz/fuzz_huggingface.cpp: libFuzzer harness for a Hugging Face directory: config.json +
// model.safetensors (io/huggingface.hpp).
#include "fuzz_common.hpp"

#include <actlens/io/huggingface.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const fuzz::two_files files = fuzz::split_two(data, size);
    fuzz::write_file("config.json", files.first);
    fuzz::write_file("model.safetensors", files.second);
    fuzz::expect_clean([&] { fuzz::exercise(actlens::io::load_huggingface(fuzz::scratch_dir())); });
    return 0;
}
