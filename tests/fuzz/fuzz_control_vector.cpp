// tests/fuzz/fuzz_control_vector.cpp: libFuzzer harness for a llama.cpp control-vector GGUF
// (methods/control_vector.hpp).
#include "fuzz_common.hpp"

#include <actlens/methods/control_vector.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("control.gguf", bytes);
    fuzz::expect_clean([&] {
        const actlens::control_vector cv = actlens::load_control_vector(path);
        (void)cv.d_model();
    });
    return 0;
}
