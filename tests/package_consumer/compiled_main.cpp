// A consumer of actlens::compiled (README "Compile time"): the forward and generation come from the
// static library, which this file only declares (`extern template`, under ACTLENS_COMPILED). It
// generates greedily from a small random Llama with a KV cache and checks every token against the
// argmax of a full forward without cache over the tokens so far. Exits 0 only if all agree.
#include <actlens/model/generate.hpp>
#include <actlens/model/random_weights.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#ifndef ACTLENS_COMPILED
#error "actlens::compiled must define ACTLENS_COMPILED for the programs that link it"
#endif

int main() {
    const actlens::model_config config = actlens::model_config::llama(2, 32, 4, 2, 48, 64, 32);
    const actlens::transformer model = actlens::make_random_transformer(config, 7);
    const std::vector<std::int32_t> prompt = {1, 17, 5, 42};
    actlens::generate_options<float> options;
    options.max_new_tokens = 8;
    const std::vector<std::int32_t> out = actlens::generate(model, prompt, options);

    bool ok = out.size() == prompt.size() + options.max_new_tokens;
    for (std::size_t n = prompt.size(); ok && n < out.size(); ++n) {
        const std::vector<std::int32_t> so_far(out.begin(), out.begin() + std::ptrdiff_t(n));
        const actlens::tensor<float> logits = model.forward(so_far);
        const float* last = &logits(0, n - 1, 0);
        const auto argmax = std::max_element(last, last + config.vocab_size) - last;
        ok = argmax == out[n];
    }
    std::printf("actlens::compiled consumer: %zu tokens generated, %s\n", out.size() - prompt.size(),
                ok ? "each the argmax of a full forward: ok" : "FAILED");
    return ok ? 0 : 1;
}
