// tests/fuzz/fuzz_npy.cpp: libFuzzer harness for a .npy file (io/npy.hpp).
#include "fuzz_common.hpp"

#include <actlens/io/npy.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string path = fuzz::write_file("input.npy", bytes);
    fuzz::expect_clean([&] { (void)actlens::io::read_npy_info(path); });
    fuzz::expect_clean([&] { (void)actlens::io::load_npy<float>(path); });
    fuzz::expect_clean([&] { (void)actlens::io::load_npy<std::int32_t>(path); });
    return 0;
}
