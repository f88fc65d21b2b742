// tests/fuzz/fuzz_gguf_model.cpp: libFuzzer harness for a llama GGUF loaded as a model (io/gguf_model.hpp).
#include "fuzz_common.hpp"

#include <actlens/io/gguf_model.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("model.gguf", bytes);
    fuzz::expect_clean([&] { fuzz::exercise(actlens::io::load_gguf(path)); });
    return 0;
}
