// Tests of actlens/io/npy.hpp: round trips, strided views, the fixtures NumPy wrote
// (tests/fixtures/make_npy_fixtures.py), byte-identical output to np.save, and hostile files.
#include "test_files.hpp"
#include "paths.hpp"

#include <catch2/catch.hpp>

#include <actlens/io/npy.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using actlens::shape_t;
using actlens::tensor;
using actlens::tensor_view;
namespace io = actlens::io;

std::string fixture(const std::string& name) {
    return actlens::test_paths::fixture_dir() + "/" + name;
}

/// A .npy file by hand: magic, version, header length (2 bytes for 1.x, 4 otherwise), header, data.
std::string npy_bytes(const std::string& header, const std::string& data = "", int major = 1,
                      int minor = 0) {
    std::string s("\x93NUMPY", 6);
    s += char(major);
    s += char(minor);
    const std::uint32_t len = std::uint32_t(header.size());
    s += char(len & 0xFF);
    s += char((len >> 8) & 0xFF);
    if (major != 1) {
        s += char((len >> 16) & 0xFF);
        s += char((len >> 24) & 0xFF);
    }
    return s + header + data;
}

std::string floats(std::size_t n) { return std::string(n * 4, '\0'); }

template <class T>
void fill_random(tensor<T>& t, std::mt19937& rng) {
    std::uniform_int_distribution<int> dist(-1000000, 1000000);
    for (auto& x : t)
        x = std::is_floating_point_v<T> ? T(dist(rng)) / T(977) : T(dist(rng));
}

template <class T>
void check_round_trip(std::mt19937& rng, const scratch_folder& dir) {
    for (int rank = 1; rank <= 4; ++rank) {
        shape_t shape;
        shape.rank = rank;
        for (int a = 0; a < rank; ++a)
            shape.extents[std::size_t(a)] = 1 + rng() % 5;
        INFO("rank " << rank << " shape " << shape.to_string() << " dtype " << io::npy_descr<T>());
        tensor<T> t(shape);
        fill_random(t, rng);
        const std::string path = dir.file("round_trip.npy");
        io::save_npy(path, t);
        const tensor<T> back = io::load_npy<T>(path);
        CHECK(back.shape() == shape);
        CHECK(std::equal(t.begin(), t.end(), back.begin(), back.end()));
        const auto info = io::read_npy_info(path);
        CHECK(info.descr == io::npy_descr<T>());
        CHECK(info.shape == shape);
        CHECK(info.data_offset % 64 == 0);
    }
}

/// The error message of load_npy<T>(path), or "" if it did not throw actlens::error.
template <class T = float>
std::string npy_load_error(const std::string& path) {
    try {
        (void)io::load_npy<T>(path);
    } catch (const actlens::error& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST_CASE("npy: round trips float, double and integer tensors of rank 1 to 4", "[npy]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    scratch_folder dir("npy");
    check_round_trip<float>(rng, dir);
    check_round_trip<double>(rng, dir);
    check_round_trip<std::int32_t>(rng, dir);
    check_round_trip<std::int64_t>(rng, dir);
    check_round_trip<std::uint8_t>(rng, dir);
    CHECK(io::npy_descr<float>() == "<f4");
    CHECK(io::npy_descr<double>() == "<f8");
    CHECK(io::npy_descr<std::int32_t>() == "<i4");
    CHECK(io::npy_descr<std::int64_t>() == "<i8");
    CHECK(io::npy_descr<std::uint8_t>() == "|u1");
    // Empty and special values survive.
    tensor<double> special({4});
    special(0) = std::numeric_limits<double>::infinity();
    special(1) = -0.0;
    special(2) = std::numeric_limits<double>::denorm_min();
    special(3) = std::numeric_limits<double>::quiet_NaN();
    io::save_npy(dir.file("special.npy"), special);
    const auto back = io::load_npy<double>(dir.file("special.npy"));
    CHECK(back(0) == special(0));
    CHECK(std::signbit(back(1)));
    CHECK(back(2) == special(2));
    CHECK(std::isnan(back(3)));
    io::save_npy(dir.file("empty.npy"), tensor<float>({0, 3}));
    CHECK(io::load_npy<float>(dir.file("empty.npy")).shape() == shape_t{0, 3});
}

TEST_CASE("npy: strided views are written in logical order", "[npy]") {
    scratch_folder dir("npy");
    tensor<float> t({4, 6});
    std::iota(t.begin(), t.end(), 0.f);
    // Every other column: [4, 3] with strides [6, 2].
    const tensor_view<const float> cols(t.data() + 1, shape_t{4, 3}, {{6, 2, 0, 0}});
    io::save_npy(dir.file("cols.npy"), cols);
    const auto a = io::load_npy<float>(dir.file("cols.npy"));
    REQUIRE(a.shape() == shape_t{4, 3});
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            CHECK(a(i, j) == float(6 * i + 2 * j + 1));
    // The transpose: [6, 4] with strides [1, 6].
    const tensor_view<float> tr(t.data(), shape_t{6, 4}, {{1, 6, 0, 0}});
    io::save_npy(dir.file("tr.npy"), tr);
    const auto b = io::load_npy<float>(dir.file("tr.npy"));
    REQUIRE(b.shape() == shape_t{6, 4});
    for (std::size_t i = 0; i < 6; ++i)
        for (std::size_t j = 0; j < 4; ++j)
            CHECK(b(i, j) == t(j, i));
    // Rank 4 with a slice on the second axis: [2, 1, 3, 2] out of [2, 3, 3, 2].
    tensor<std::int32_t> big({2, 3, 3, 2});
    std::iota(big.begin(), big.end(), 0);
    const tensor_view<std::int32_t> v = big.view();
    const tensor_view<std::int32_t> mid(v.data() + v.stride(1), shape_t{2, 1, 3, 2}, v.strides());
    io::save_npy(dir.file("mid.npy"), mid);
    const auto c = io::load_npy<std::int32_t>(dir.file("mid.npy"));
    REQUIRE(c.shape() == shape_t{2, 1, 3, 2});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t k = 0; k < 3; ++k)
            for (std::size_t l = 0; l < 2; ++l)
                CHECK(c(i, 0, k, l) == big(i, 1, k, l));
}

TEST_CASE("npy: reads the fixtures NumPy wrote", "[npy]") {
    const auto a = io::load_npy<float>(fixture("npy_arange_2x3x4_f4.npy"));
    REQUIRE(a.shape() == shape_t{2, 3, 4});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t k = 0; k < 4; ++k)
                CHECK(a(i, j, k) == float(12 * i + 4 * j + k));

    const auto v = io::load_npy<std::int64_t>(fixture("npy_vector_i8.npy"));
    REQUIRE(v.shape() == shape_t{5});
    CHECK(v(0) == -3);
    CHECK(v(1) == 0);
    CHECK(v(2) == 7);
    CHECK(v(3) == (std::int64_t(1) << 40));
    CHECK(v(4) == -(std::int64_t(1) << 62));

    const auto m = io::load_npy<std::int32_t>(fixture("npy_matrix_i4.npy"));
    REQUIRE(m.shape() == shape_t{2, 3});
    CHECK(m(0, 0) == 1);
    CHECK(m(1, 2) == -6);

    const auto d = io::load_npy<double>(fixture("npy_matrix_f8.npy"));
    REQUIRE(d.shape() == shape_t{2, 2});
    CHECK(d(0, 0) == 0.5);
    CHECK(d(0, 1) == -1.25);
    CHECK(d(1, 0) == 1e300);
    CHECK(d(1, 1) == -std::ldexp(1.0, -1070));

    // float16 converts exactly into float and double.
    const auto h = io::load_npy<float>(fixture("npy_vector_f2.npy"));
    REQUIRE(h.shape() == shape_t{7});
    CHECK(h(0) == 0.f);
    CHECK(h(1) == 1.f);
    CHECK(h(2) == -2.f);
    CHECK(h(3) == 0.333251953125f);
    CHECK(h(4) == 65504.f);
    CHECK(h(5) == std::ldexp(1.f, -24));
    CHECK(h(6) == std::numeric_limits<float>::infinity());
    CHECK(io::load_npy<double>(fixture("npy_vector_f2.npy"))(3) == 0.333251953125);

    // A numpy scalar loads as shape [1].
    const auto s = io::load_npy<float>(fixture("npy_scalar_f4.npy"));
    CHECK(s.shape() == shape_t{1});
    CHECK(s(0) == 2.5f);

    // Format versions 2.0 and 3.0.
    const auto v2 = io::load_npy<float>(fixture("npy_v2_f4.npy"));
    REQUIRE(v2.shape() == shape_t{3, 2});
    CHECK(v2(2, 1) == 5.f);
    CHECK(io::read_npy_info(fixture("npy_v2_f4.npy")).major_version == 2);
    const auto v3 = io::load_npy<float>(fixture("npy_v3_f4.npy"));
    REQUIRE(v3.shape() == shape_t{2, 3});
    CHECK(v3(1, 0) == 3.f);
}

TEST_CASE("npy: save_npy writes the same bytes as np.save", "[npy]") {
    // The fixtures were written by np.save: loading and saving them again must reproduce the file,
    // header padding included.
    scratch_folder dir("npy");
    for (const char* name : {"npy_arange_2x3x4_f4.npy", "npy_matrix_f8.npy"}) {
        INFO(name);
        const std::string out = dir.file("copy.npy");
        if (std::string(name).find("f8") != std::string::npos)
            io::save_npy(out, io::load_npy<double>(fixture(name)));
        else
            io::save_npy(out, io::load_npy<float>(fixture(name)));
        CHECK(read_file(out) == read_file(fixture(name)));
    }
    const std::string out = dir.file("copy_i8.npy");
    io::save_npy(out, io::load_npy<std::int64_t>(fixture("npy_vector_i8.npy")));
    CHECK(read_file(out) == read_file(fixture("npy_vector_i8.npy")));
}

TEST_CASE("npy: refuses Fortran order and other dtypes with actlens::error naming them", "[npy]") {
    const std::string fortran = npy_load_error(fixture("npy_fortran_f4.npy"));
    CHECK_THAT(fortran, Catch::Contains("[actlens.io.206]") && Catch::Contains("Fortran order"));
    const std::string f4_as_f8 = npy_load_error<double>(fixture("npy_arange_2x3x4_f4.npy"));
    CHECK_THAT(f4_as_f8, Catch::Contains("[actlens.io.206]") && Catch::Contains("'<f4'") &&
                             Catch::Contains("'<f8'"));
    const std::string i8_as_i4 = npy_load_error<std::int32_t>(fixture("npy_vector_i8.npy"));
    CHECK_THAT(i8_as_i4, Catch::Contains("'<i8'") && Catch::Contains("'<i4'"));
    CHECK_THAT(npy_load_error<std::int16_t>(fixture("npy_vector_f2.npy")), Catch::Contains("'<f2'"));
    CHECK_THAT(npy_load_error(fixture("does_not_exist.npy")), Catch::Contains("[actlens.io.201]"));
}

TEST_CASE("npy: hostile files give actlens::error, never a crash", "[npy]") {
    scratch_folder dir("npy");
    const std::string p = dir.file("hostile.npy");
    auto error_of = [&](const std::string& bytes) {
        write_file(p, bytes);
        return npy_load_error(p);
    };
    const std::string ok_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
    REQUIRE(error_of(npy_bytes(ok_header, floats(3))).empty()); // the baseline is valid

    // Magic.
    CHECK_THAT(error_of(""), Catch::Contains("[actlens.io.202]"));
    CHECK_THAT(error_of("PK\x03\x04 this is a zip"), Catch::Contains("[actlens.io.203]"));
    CHECK_THAT(error_of(std::string("\x93NUMPZ\x01\x00", 8)), Catch::Contains("[actlens.io.203]"));
    CHECK_THAT(error_of(std::string("\x93NUM", 4)), Catch::Contains("[actlens.io.202]"));

    // Truncation: header length past the end, data shorter than the shape says.
    CHECK_THAT(error_of(npy_bytes(ok_header).substr(0, 30)), Catch::Contains("[actlens.io.202]"));
    CHECK_THAT(error_of(npy_bytes(ok_header, floats(2))), Catch::Contains("[actlens.io.202]"));
    CHECK_THAT(error_of(std::string("\x93NUMPY\x02\x00\xf0\xff\xff\xff{}", 14)),
               Catch::Contains("[actlens.io.202]"));
    // A huge but representable shape is refused as truncated before anything is allocated.
    CHECK_THAT(error_of(npy_bytes(
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1024), }")),
               Catch::Contains("[actlens.io.202]"));

    // Overflow: in the element count, the byte count, and a single extent.
    CHECK_THAT(
        error_of(npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }")),
        Catch::Contains("[actlens.io.205]"));
    CHECK_THAT(error_of(npy_bytes(
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }")),
               Catch::Contains("[actlens.io.205]"));
    CHECK_THAT(
        error_of(npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }")),
        Catch::Contains("[actlens.io.205]"));

    // Fuzzer finding: a 0 extent empties the array, but the strides of the others were still formed
    // (signed overflow in tensor_view). Refused by read_npy_info too, wherever the zero is.
    for (const char* shape : {"(0, 4294967296, 4294967296)", "(4294967296, 4294967296, 0)", "(3037000500, 0, 3037000500)"}) {
        const std::string header = std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }";
        INFO("shape " << shape);
        CHECK_THAT(error_of(npy_bytes(header)), Catch::Contains("[actlens.io.205]") && Catch::Contains("(a 0 counted as 1)"));
        CHECK_THROWS_WITH(io::read_npy_info(p), Catch::Contains("[actlens.io.205]"));
    }
    // An empty array whose other extents are addressable loads, with its shape.
    REQUIRE(error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1048576, 1048576), }")).empty());
    CHECK(io::load_npy<float>(p).shape() == shape_t{0, 1u << 20, 1u << 20});

    // Malformed dictionaries.
    for (const char* header : {
             "",                                                                // nothing
             "{'descr': '<f4', 'fortran_order': False}",                        // no shape
             "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", // unknown key
             "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", // duplicate
             "{'descr': '<f4, 'fortran_order': False, 'shape': (3,)}",  // quote not closed as meant
             "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,)}", // not a bool
             "{'descr': '<f4', 'fortran_order': False, 'shape': (3, x)}", // not a number
             "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}",  // negative
             "{'descr': '<f4', 'fortran_order': False, 'shape': 3}",      // not a tuple
             "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x", // trailing text
             "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)",    // no closing brace
             "{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}",    // missing comma
             "{'descr': '<f4', 'fortran_order': False, 'shape': (3,"      // cut in the shape
         }) {
        INFO("header " << header);
        CHECK_THAT(error_of(npy_bytes(header, floats(3))), Catch::Contains("[actlens.io.204]"));
    }

    // Unsupported but well-formed: rank 5, versions, byte order, structured dtypes.
    CHECK_THAT(
        error_of(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1), }",
                           floats(1))),
        Catch::Contains("[actlens.io.206]") && Catch::Contains("rank"));
    CHECK_THAT(error_of(npy_bytes(ok_header, floats(3), 4, 0)),
               Catch::Contains("[actlens.io.206]"));
    CHECK_THAT(error_of(npy_bytes(ok_header, floats(3), 1, 1)),
               Catch::Contains("[actlens.io.206]"));
    CHECK_THAT(
        error_of(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", floats(3))),
        Catch::Contains("[actlens.io.206]") && Catch::Contains("'>f4'"));
    CHECK_THAT(
        error_of(npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }",
                           floats(3))),
        Catch::Contains("[actlens.io.206]"));

    // Accepted variations: double quotes, other key order, '=' byte order, no trailing comma,
    // Python 2 long suffix, version 2.0, trailing bytes after the data.
    const std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40", 12); // 1, 2, 3
    for (const std::string& bytes :
         {npy_bytes("{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"=f4\"}", data),
          npy_bytes(ok_header, data, 2, 0), npy_bytes(ok_header, data + "junk")}) {
        write_file(p, bytes);
        const auto t = io::load_npy<float>(p);
        REQUIRE(t.shape() == shape_t{3});
        CHECK(t(0) == 1.f);
        CHECK(t(2) == 3.f);
    }
}

TEST_CASE("npy: save_npy reports files it cannot create", "[npy]") {
    tensor<float> t({2});
    CHECK_THROWS_WITH(io::save_npy("/nonexistent-dir/x.npy", t),
                      Catch::Contains("[actlens.io.201]"));
    CHECK_THROWS_WITH(io::save_npy("/tmp/x.npy", tensor_view<const float>()),
                      Catch::Contains("[actlens.arg.101]"));
}
