// tests/fuzz/fuzz_llama2c_model.cpp: libFuzzer harness for a llama2.c checkpoint (io/llama2c.hpp).
#include "fuzz_common.hpp"

#include <actlens/io/llama2c.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("model.bin", bytes);
    fuzz::expect_clean([&] { fuzz::exercise(actlens::io::load_llama2c(path)); });
    return 0;
}
