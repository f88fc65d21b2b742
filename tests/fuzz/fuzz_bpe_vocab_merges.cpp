// tests/fuzz/fuzz_bpe_vocab_merges.cpp: libFuzzer harness for GPT-2 vocab.json + merges.txt
// (tokenizer/bpe.hpp).
#include "fuzz_common.hpp"

#include <actlens/tokenizer/bpe.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const fuzz::two_files files = fuzz::split_two(data, size);
    fuzz::write_file("vocab.json", files.first);
    fuzz::write_file("merges.txt", files.second);
    fuzz::expect_clean([&] { fuzz::exercise(actlens::load_bpe_tokenizer(fuzz::scratch_dir()), bytes); });
    return 0;
}
