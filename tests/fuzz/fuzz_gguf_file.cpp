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
        fuzz::read_every_tensor(file);
    });
    return 0;
}
