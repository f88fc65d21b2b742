// tests/fuzz/fuzz_tokenizer_json.cpp: libFuzzer harness for a Hugging Face tokenizer.json
// (tokenizer/bpe.hpp).
#include "fuzz_common.hpp"

#include <actlens/tokenizer/bpe.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("input_tokenizer.json", bytes);
    fuzz::expect_clean([&] { fuzz::exercise(actlens::load_bpe_tokenizer(path), bytes); });
    return 0;
}
