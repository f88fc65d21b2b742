// tests/fuzz/fuzz_llama2c_tokenizer.cpp: libFuzzer harness for a llama2.c tokenizer.bin
// (tokenizer/llama2c.hpp).
#include "fuzz_common.hpp"

#include <actlens/tokenizer/llama2c.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    fuzz::expect_clean([&] {
        const auto t = actlens::llama2c_tokenizer::from_bytes(reinterpret_cast<const std::byte*>(data), size, "fuzz");
        fuzz::exercise(t, bytes);
    });
    return 0;
}
