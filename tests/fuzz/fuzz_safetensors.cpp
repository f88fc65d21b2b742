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
        for (const actlens::io::safetensors_tensor_info& t : file.tensors())
            fuzz::expect_clean([&] {
                actlens::tensor<float> storage;
                const actlens::tensor_view<const float> v = file.float_view(t.name, storage);
                volatile float sink = v.size() ? v.data()[v.size() - 1] : 0.0f;
                (void)sink;
            });
    });
    return 0;
}
