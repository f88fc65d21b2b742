// tests/fuzz/fuzz_gguf_vocab.cpp: libFuzzer harness for a GGUF's embedded llama vocabulary
// (tokenizer/gguf_vocab.hpp).
#include "fuzz_common.hpp"

#include <actlens/tokenizer/gguf_vocab.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("vocab.gguf", bytes);
    fuzz::expect_clean([&] { fuzz::exercise(actlens::load_gguf_tokenizer(path), bytes); });
    return 0;
}
