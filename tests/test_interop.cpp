// Tests of actlens/interop/eigen.hpp and actlens/interop/xtensor.hpp: the adapters see the same
// elements as the view (dense and strided), writes go through to the tensor, const stays const.
#include <catch2/catch.hpp>

#include <actlens/interop/eigen.hpp>
#include <actlens/interop/xtensor.hpp>

#include <cstddef>
#include <numeric>
#include <type_traits>

#include <xtensor/xarray.hpp>
#include <xtensor/xview.hpp>

namespace {

using actlens::shape_t;
using actlens::tensor;
using actlens::tensor_view;

/// A [4, 6] tensor holding 0 .. 23 in row-major order.
tensor<double> iota_4x6() {
    tensor<double> t({4, 6});
    std::iota(t.begin(), t.end(), 0.0);
    return t;
}

/// Whether element (0, 0) of an adapter can be assigned to.
template <class M>
constexpr bool is_writable_v = std::is_assignable_v<decltype(std::declval<M&>()(0, 0)), double>;

} // namespace

TEST_CASE("as_eigen: maps rank-2 and rank-1 views in place", "[interop]") {
    auto t = iota_4x6();
    auto m = actlens::as_eigen(t);
    REQUIRE(m.rows() == 4);
    REQUIRE(m.cols() == 6);
    CHECK(m(2, 3) == 15.0);
    CHECK(m.data() == t.data());
    m(1, 2) = -1.0; // writes land in the tensor
    CHECK(t(1, 2) == -1.0);
    m.row(3).setZero();
    CHECK(t(3, 5) == 0.0);
    // Linear algebra on the map: column sums of rows 0..1.
    const Eigen::RowVectorXd sums = m.topRows(2).colwise().sum();
    CHECK(sums(0) == 0.0 + 6.0);
    CHECK(sums(2) == 2.0 + -1.0);

    auto v = actlens::as_eigen(t.view().slice(2)); // rank 1: a 6 x 1 column
    REQUIRE(v.rows() == 6);
    REQUIRE(v.cols() == 1);
    CHECK(v(4, 0) == 16.0);
    v(0, 0) = 100.0;
    CHECK(t(2, 0) == 100.0);
}

TEST_CASE("as_eigen: strided views map with their strides", "[interop]") {
    auto t = iota_4x6();
    // Every other column: [4, 3] with strides [6, 2].
    const tensor_view<double> cols(t.data() + 1, shape_t{4, 3}, {{6, 2, 0, 0}});
    auto m = actlens::as_eigen(cols);
    CHECK(m(0, 0) == 1.0);
    CHECK(m(3, 2) == 23.0);
    m(2, 1) = -3.0;
    CHECK(t(2, 3) == -3.0);
    // The transpose of the tensor as a view: [6, 4] with strides [1, 6]; compare with Eigen's.
    const tensor_view<double> tr(t.data(), shape_t{6, 4}, {{1, 6, 0, 0}});
    CHECK(actlens::as_eigen(tr) == actlens::as_eigen(t).transpose());
    // A column as a rank-1 view with stride 6.
    const tensor_view<double> col(t.data() + 4, shape_t{4}, {{6, 0, 0, 0}});
    const Eigen::VectorXd c = actlens::as_eigen(col);
    CHECK(c(3) == 22.0);
    // Row ranges.
    const auto rows = actlens::as_eigen(t.view().rows(1, 3));
    CHECK(rows.rows() == 2);
    CHECK(rows(1, 0) == 12.0);
}

TEST_CASE("as_eigen: const views give read-only maps; other ranks throw", "[interop]") {
    const auto t = iota_4x6();
    auto m = actlens::as_eigen(t);
    static_assert(!is_writable_v<decltype(m)>, "a map of const data must be read-only");
    auto w = actlens::as_eigen(tensor_view<double>(const_cast<double*>(t.data()), t.shape()));
    static_assert(is_writable_v<decltype(w)>);
    CHECK(m(3, 5) == 23.0);
    tensor_view<const double> cv = t.view();
    CHECK(actlens::as_eigen(cv).sum() == 276.0);
    tensor<float> cube({2, 2, 2});
    CHECK_THROWS_WITH(actlens::as_eigen(cube),
                      Catch::Contains("[actlens.arg.101]") && Catch::Contains("rank 3"));
}

TEST_CASE("as_xtensor: adapts views of any rank in place", "[interop]") {
    tensor<float> t({2, 3, 4});
    std::iota(t.begin(), t.end(), 0.f);
    auto x = actlens::as_xtensor(t);
    REQUIRE(x.dimension() == 3);
    CHECK(x.shape()[2] == 4);
    CHECK(x(1, 2, 3) == 23.f);
    CHECK(x.data() == t.data());
    x(0, 1, 2) = -6.f; // writes land in the tensor
    CHECK(t(0, 1, 2) == -6.f);
    x += 1.f; // expressions assign in place
    CHECK(t(1, 2, 3) == 24.f);
    CHECK(xt::sum(x)() == 276.f - 12.f + 24.f); // 0..23, one 6 made -6, then 24 ones added
    const xt::xarray<float> copy = xt::view(x, 1, xt::all(), 0);
    CHECK(copy(2) == 21.f);
}

TEST_CASE("as_xtensor: strided views and broadcasting", "[interop]") {
    tensor<double> t({4, 6});
    std::iota(t.begin(), t.end(), 0.0);
    // Every other column: [4, 3] with strides [6, 2].
    const tensor_view<double> cols(t.data() + 1, shape_t{4, 3}, {{6, 2, 0, 0}});
    auto x = actlens::as_xtensor(cols);
    CHECK(x(0, 0) == 1.0);
    CHECK(x(3, 2) == 23.0);
    x(2, 1) = -3.0;
    CHECK(t(2, 3) == -3.0);
    // Expressions write only the viewed elements.
    x *= 2.0;
    CHECK(t(0, 1) == 2.0);
    CHECK(t(0, 2) == 2.0); // not in the view
    CHECK(t(3, 5) == 46.0);
    CHECK(t(3, 4) == 22.0);
    x /= 2.0;
    // Iteration follows the logical order.
    const xt::xarray<double> dense = x;
    CHECK(dense(1, 2) == 11.0);
    CHECK(dense(2, 1) == -3.0);
    // fill and expression assignment also touch only the viewed elements.
    x.fill(7.0);
    CHECK(t(1, 3) == 7.0);
    CHECK(t(1, 2) == 8.0);
    x = dense + 1.0;
    CHECK(t(1, 5) == 12.0);
    CHECK(t(1, 4) == 10.0);
    x = dense;
    // A [1, 3] row of the strided view broadcast against [2, 3]: the size-1 axis must not step.
    const auto row = actlens::as_xtensor(cols.rows(1, 2));
    const xt::xarray<double> ones = xt::ones<double>({2, 3});
    const xt::xarray<double> sum = row + ones;
    CHECK(sum(0, 0) == 8.0);
    CHECK(sum(1, 0) == 8.0);
    CHECK(sum(1, 2) == 12.0);
    // Const data stays const.
    const tensor<double>& ct = t;
    auto cx = actlens::as_xtensor(ct);
    static_assert(!is_writable_v<decltype(cx)>, "an adaptor of const data must be read-only");
    static_assert(is_writable_v<decltype(x)>);
    CHECK(cx(3, 5) == 23.0);
    // A negative stride cannot be adapted.
    const tensor_view<double> reversed(t.data() + 5, shape_t{6}, {{-1, 0, 0, 0}});
    CHECK_THROWS_WITH(actlens::as_xtensor(reversed), Catch::Contains("[actlens.arg.101]"));
}
