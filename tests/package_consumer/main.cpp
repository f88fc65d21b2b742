// A consumer of actlens as another project sees it (installed, or pulled in with add_subdirectory):
// builds a tensor, reads it back through a view, and checks that bad input throws the numbered error.
// Exits 0 only if every computed value is right.
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>

#include <cstddef>
#include <cstdio>
#include <string>

int main() {
    actlens::tensor<float> t{2, 3};
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j) t(i, j) = static_cast<float>(3 * i + j + 1);

    const actlens::tensor_view<const float> v = t.view();
    float sum = 0.0f;
    for (std::size_t i = 0; i < v.extent(0); ++i)
        for (std::size_t j = 0; j < v.extent(1); ++j) sum += v(i, j);

    std::string message;
    bool code_ok = false;
    try {
        (void)t.at(2, 0);
    } catch (const actlens::error& e) {
        message = e.what();
        code_ok = e.code() == actlens::errc::out_of_range;
    }
    const bool id_ok = message.rfind("[actlens.arg.103]", 0) == 0;

    std::printf("actlens consumer: tensor %s, sum %g (expected 21), at(2, 0) threw \"%s\"\n",
                t.shape().to_string().c_str(), static_cast<double>(sum), message.c_str());
    const bool ok = sum == 21.0f && code_ok && id_ok;
    std::printf("actlens consumer: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
