// Tests of actlens/core/tensor.hpp: shape_t, tensor<T> (aligned, capacity-reusing storage) and
// tensor_view<T> (strides, slices, row ranges, reshapes, checked access).
#include <catch2/catch.hpp>

#include <actlens/core/tensor.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using actlens::shape_t;
using actlens::tensor;
using actlens::tensor_view;

template <class T>
bool aligned64(const T* p) {
    return reinterpret_cast<std::uintptr_t>(p) % 64 == 0;
}

} // namespace

TEST_CASE("shape_t: rank, elements and printing", "[tensor]") {
    const shape_t s{2, 3, 4};
    CHECK(s.rank == 3);
    CHECK(s[0] == 2);
    CHECK(s[2] == 4);
    CHECK(s[3] == 1); // unused trailing extents are 1
    CHECK(s.elements() == 24);
    CHECK(s.to_string() == "[2, 3, 4]");
    CHECK(shape_t{5}.elements() == 5);
    CHECK(shape_t{3, 0}.elements() == 0);
    CHECK(shape_t{}.elements() == 0);
    CHECK(shape_t{2, 3} == shape_t{2, 3});
    CHECK(shape_t{2, 3} != shape_t{3, 2});
    CHECK(shape_t{2, 3} != shape_t{2, 3, 1}); // rank is part of the shape
}

TEST_CASE("shape_t: ranks outside 1..4 and overflowing shapes throw actlens::error", "[tensor]") {
    CHECK_THROWS_WITH((shape_t{1, 2, 3, 4, 5}), Catch::Contains("[actlens.arg.101]"));
    const std::size_t big = std::numeric_limits<std::size_t>::max() / 2 + 1;
    CHECK_THROWS_WITH((shape_t{big, 2}.elements()),
                      Catch::Contains("[actlens.io.205]") && Catch::Contains("overflow"));
    CHECK_THROWS_AS((shape_t{big, 3, 1, 1}.elements()), actlens::error);
    try {
        (void)shape_t{1u << 20, 1u << 20, 1u << 20, 1u << 20}.elements(); // 2^80
        FAIL("no exception");
    } catch (const actlens::error& e) {
        CHECK(e.code() == actlens::errc::size_overflow);
    }
    // A tensor of such a shape is refused before any allocation.
    CHECK_THROWS_AS(tensor<float>({big, 2}), actlens::error);
    // Elements fit in size_t, bytes do not: refused too (no attempt to allocate 2^63 floats).
    CHECK_THROWS_WITH(tensor<float>({std::numeric_limits<std::size_t>::max() / 2}),
                      Catch::Contains("[actlens.io.205]"));
}

TEST_CASE("shape_t: a zero extent does not excuse the others from the stride check", "[tensor]") {
    // Fuzzer finding (gguf): [0, 2^40, 2^40] has no element, but its stride on axis 0 is 2^80.
    const std::size_t big = std::size_t(1) << 40;
    for (const shape_t& s : {shape_t{0, big, big}, shape_t{big, big, 0}, shape_t{big, 0, big, 1}}) {
        INFO(s.to_string());
        CHECK_THROWS_WITH(s.elements(), Catch::Contains("[actlens.io.205]") && Catch::Contains(s.to_string()));
        CHECK_THROWS_WITH(tensor_view<const float>(nullptr, s), Catch::Contains("[actlens.io.205]"));
        CHECK_THROWS_WITH((tensor_view<const float>(nullptr, s, {{0, 0, 0, 0}})), Catch::Contains("[actlens.io.205]"));
        CHECK_THROWS_WITH(tensor<float>(s), Catch::Contains("[actlens.io.205]"));
    }
    // The bound is ptrdiff_t, the type of a stride, not size_t.
    const std::size_t half = std::size_t(PTRDIFF_MAX) / 2 + 1;
    CHECK_THROWS_WITH((shape_t{half, 2}.elements()), Catch::Contains("[actlens.io.205]"));
    CHECK((shape_t{std::size_t(PTRDIFF_MAX)}.elements()) == std::size_t(PTRDIFF_MAX));
    // Empty shapes within the bound: no elements, and the strides of the other axes as usual.
    CHECK((shape_t{0, 3, 5}.elements()) == 0);
    const tensor_view<const float> v(nullptr, shape_t{0, 3, 5});
    CHECK(v.stride(0) == 15);
    CHECK(v.stride(1) == 5);
    CHECK(v.stride(2) == 1);
    CHECK(v.empty());
    // The shared check counts zeros as one and reports the product of the extents otherwise.
    std::size_t n = 7;
    const std::vector<std::uint64_t> zero_and_huge{0, std::uint64_t(1) << 62, 4};
    CHECK_FALSE(actlens::addressable_elements(zero_and_huge.begin(), zero_and_huge.end(), n));
    CHECK(n == 7);
    const std::vector<std::uint64_t> fine{3, 0, std::uint64_t(1) << 61};
    CHECK(actlens::addressable_elements(fine.begin(), fine.end(), n));
    CHECK(n == 0);
    const std::vector<std::size_t> dims{2, 3, 4};
    CHECK(actlens::addressable_elements(dims.begin(), dims.end(), n));
    CHECK(n == 24);
}

TEST_CASE("tensor: is zero-filled, 64-byte aligned and row-major", "[tensor]") {
    for (std::size_t n : {1u, 3u, 7u, 16u, 17u, 100u, 1000u}) {
        tensor<float> f({n});
        tensor<double> d({2, n});
        tensor<std::int32_t> i({n, 1, 3});
        tensor<std::int8_t> c({n});
        CHECK(aligned64(f.data()));
        CHECK(aligned64(d.data()));
        CHECK(aligned64(i.data()));
        CHECK(aligned64(c.data()));
        CHECK(std::all_of(d.begin(), d.end(), [](double x) { return x == 0.0; }));
    }
    static_assert(tensor<float>::alignment == 64);
    tensor<int> t({2, 3, 4});
    std::iota(t.begin(), t.end(), 0);
    CHECK(t.size() == 24);
    CHECK(t(1, 2, 3) == 23);
    CHECK(t(1, 0, 2) == 14);
    CHECK(t.view().strides()[0] == 12);
    CHECK(t.view().strides()[1] == 4);
    CHECK(t.view().strides()[2] == 1);
    CHECK(t.view().is_contiguous());
}

TEST_CASE("tensor: resize reuses capacity and zero-fills; reshape_uninitialized keeps the bytes",
          "[tensor]") {
    tensor<float> t({8, 8});
    const float* buffer = t.data();
    CHECK(t.capacity() == 64);
    std::fill(t.begin(), t.end(), 1.f);

    t.resize({4, 4}); // smaller: same buffer, no allocation
    CHECK(t.data() == buffer);
    CHECK(t.capacity() == 64);
    CHECK(t.shape() == shape_t{4, 4});
    CHECK(t.size() == 16);
    CHECK(std::all_of(t.begin(), t.end(), [](float x) { return x == 0.f; }));

    t.resize({2, 4, 8}); // equal size, other rank: same buffer
    CHECK(t.data() == buffer);

    t(0, 0, 0) = 5.f;
    t.reshape_uninitialized({4, 16});
    CHECK(t.data() == buffer);
    CHECK(t(0, 0) == 5.f); // not cleared

    t.resize({9, 9}); // larger: grows, still aligned
    CHECK(t.capacity() == 81);
    CHECK(aligned64(t.data()));
    const float* grown = t.data();
    t.resize({3});
    CHECK(t.data() == grown);
    CHECK(t.capacity() == 81); // never shrinks
}

TEST_CASE("tensor: copies are deep, moves transfer the buffer", "[tensor]") {
    tensor<double> a({3, 2});
    std::iota(a.begin(), a.end(), 1.0);
    tensor<double> b = a;
    CHECK(b.data() != a.data());
    CHECK(b.shape() == a.shape());
    b(0, 0) = -1;
    CHECK(a(0, 0) == 1.0);
    const double* buffer = a.data();
    tensor<double> c = std::move(a);
    CHECK(c.data() == buffer);
    CHECK(c(2, 1) == 6.0);
    tensor<double> d;
    d = b;
    CHECK(d(0, 0) == -1.0);
    CHECK(d(2, 1) == 6.0);
}

TEST_CASE("tensor_view: slice, rows and reshaped give the right elements", "[tensor]") {
    tensor<int> t({2, 3, 4});
    std::iota(t.begin(), t.end(), 0);
    const tensor_view<int> v = t.view();

    const auto s = v.slice(1); // [3, 4] starting at element 12
    CHECK(s.rank() == 2);
    CHECK(s.shape() == shape_t{3, 4});
    CHECK(s.data() == t.data() + 12);
    CHECK(s(2, 3) == 23);
    CHECK(s.is_contiguous());
    const auto s2 = s.slice(2); // rank 1: [4]
    CHECK(s2.shape() == shape_t{4});
    CHECK(s2(1) == 21);
    const auto s3 = s2.slice(3); // rank 1 -> a 1-element view
    CHECK(s3.shape() == shape_t{1});
    CHECK(s3(0) == 23);

    const auto r = s.rows(1, 3); // rows 1..2 of the [3, 4] slice, rank kept
    CHECK(r.shape() == shape_t{2, 4});
    CHECK(r(0, 0) == 16);
    CHECK(r(1, 3) == 23);
    CHECK(s.rows(2, 2).size() == 0);

    const auto m = v.reshaped({6, 4});
    CHECK(m(5, 3) == 23);
    CHECK(m(1, 0) == 4);
    CHECK(v.reshaped({24})(17) == 17);

    // Writes through a view land in the tensor.
    s(0, 1) = -5;
    CHECK(t(1, 0, 1) == -5);

    // A view of mutable data converts to a view of const data.
    tensor_view<const int> cv = v;
    CHECK(cv(1, 0, 1) == -5);
    static_assert(std::is_same_v<decltype(cv.data()), const int*>);
    static_assert(!std::is_convertible_v<tensor_view<const int>, tensor_view<int>>);
}

TEST_CASE("tensor_view: strided views index by their strides and refuse to reshape", "[tensor]") {
    tensor<int> t({4, 6});
    std::iota(t.begin(), t.end(), 0);
    // Every other column of rows 0..3: shape [4, 3], strides [6, 2].
    const tensor_view<int> cols(t.data() + 1, shape_t{4, 3}, {{6, 2, 0, 0}});
    CHECK(!cols.is_contiguous());
    CHECK(cols(0, 0) == 1);
    CHECK(cols(2, 1) == 15);
    CHECK(cols(3, 2) == 23);
    CHECK(cols.slice(1)(2) == 11);
    CHECK(cols.rows(2, 4)(0, 0) == 13);
    CHECK_THROWS_WITH(cols.reshaped({12}), Catch::Contains("[actlens.arg.102]"));
    CHECK_THROWS_WITH(t.view().reshaped({5, 5}), Catch::Contains("[actlens.arg.102]"));

    // copy_of makes a dense copy in logical order.
    const auto dense = tensor<int>::copy_of(cols);
    CHECK(dense.shape() == shape_t{4, 3});
    CHECK(dense(2, 1) == 15);
    CHECK(dense.view().is_contiguous());
    tensor<int> wrong({3, 4});
    CHECK_THROWS_WITH(tensor<int>::copy_into(cols, wrong.view()),
                      Catch::Contains("[actlens.arg.102]"));
}

TEST_CASE("tensor_view: at() checks every axis and throws [actlens.arg.103]", "[tensor]") {
    tensor<float> t({2, 3});
    t(1, 2) = 7.f;
    CHECK(t.at(1, 2) == 7.f);
    CHECK(t.view().at(1, 2) == 7.f);
    CHECK_THROWS_WITH(t.at(2, 0),
                      Catch::Contains("[actlens.arg.103]") && Catch::Contains("axis 0"));
    CHECK_THROWS_WITH(t.at(0, 3),
                      Catch::Contains("[actlens.arg.103]") && Catch::Contains("axis 1"));
    CHECK_THROWS_WITH(t.at(0, 0, 1), Catch::Contains("[actlens.arg.103]")); // beyond the rank
    const tensor<float>& ct = t;
    CHECK_THROWS_AS(ct.at(5, 5), actlens::error);
    try {
        (void)t.at(0, 99);
        FAIL("no exception");
    } catch (const actlens::error& e) {
        CHECK(e.code() == actlens::errc::out_of_range);
        CHECK(std::string(e.what()).find("99") != std::string::npos);
    }
    CHECK_THROWS_WITH(t.view().slice(2), Catch::Contains("[actlens.arg.103]"));
    CHECK_THROWS_WITH(t.view().rows(1, 3), Catch::Contains("[actlens.arg.103]"));
    CHECK_THROWS_WITH(t.view().rows(2, 1), Catch::Contains("[actlens.arg.103]"));
}

TEST_CASE("tensor: empty and zero-extent tensors", "[tensor]") {
    tensor<float> none;
    CHECK(none.empty());
    CHECK(none.size() == 0);
    CHECK(none.rank() == 0);
    tensor<float> zero({0, 5});
    CHECK(zero.empty());
    CHECK(zero.size() == 0);
    CHECK(zero.shape() == shape_t{0, 5});
    tensor<float> copy = zero;
    CHECK(copy.shape() == shape_t{0, 5});
}

TEST_CASE("tensor: a moved-from tensor is empty and can be resized and reused", "[tensor]") {
    actlens::tensor<float> a({4, 8});
    a(1, 2) = 3.0f;
    actlens::tensor<float> b = std::move(a);
    CHECK(b(1, 2) == 3.0f);
    CHECK(a.capacity() == 0);
    CHECK(a.size() == 0);
    a.resize({2, 3}); // must allocate afresh, not write through the moved-away buffer
    a(1, 1) = 5.0f;
    CHECK(a(1, 1) == 5.0f);
    actlens::tensor<float> c({2});
    c = std::move(b);
    CHECK(c(1, 2) == 3.0f);
    CHECK(b.capacity() == 0);
}
