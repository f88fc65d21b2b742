// tests/fuzz/fuzz_gguf_file.cpp: libFuzzer harness for GGUF header, metadata and tensor data (io/gguf.hpp).
#include "fuzz_common.hpp"

#include <actlens/io/gguf.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("input.gguf", bytes);
    fuzz::expect_clean([&] {
        const actlens::io::gguf_file file(path);
        for (const auto& [key, value] : file.metadata()) (void)value.type();
        for (const actlens::io::gguf_tensor_info& t : file.tensors())
            fuzz::expect_clean([&] {
                actlens::tensor<float> storage;
                const actlens::tensor_view<const float> v = file.float_view(t.name, storage);
                volatile float sink = v.size() ? v.data()[v.size() - 1] : 0.0f;
                (void)sink;
            });
    });
    return 0;
}
