// tests/fuzz/fuzz_safetensors.cpp: libFuzzer harness for a safetensors file: header JSON and tensor
// data (io/safetensors.hpp).
#include "fuzz_common.hpp"

#include <actlens/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("input.safetensors", bytes);
    fuzz::expect_clean([&] {
        const actlens::io::safetensors_file file(path);
        fuzz::read_every_tensor(file);
    });
    return 0;
}
