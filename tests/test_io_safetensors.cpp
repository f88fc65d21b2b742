// Tests of actlens/io/safetensors.hpp: writer/reader round trips (F32 in place, F16/BF16 rounded
// to nearest even), hand-written files with scalars, empty and misaligned tensors, and hostile
// headers, each of which must give an actlens::error naming the file and the tensor or field.
#include "test_files.hpp"
#include "test_helpers.hpp"

#include <actlens/core/dtype.hpp>
#include <actlens/io/safetensors.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using namespace actlens;
namespace fs = std::filesystem;

namespace {

/// A safetensors file from a header text and data bytes; `header_size` overrides the length field.
std::string write_raw(const std::string& name, const std::string& header,
                      const std::vector<unsigned char>& data,
                      std::uint64_t header_size = UINT64_MAX, bool write_header_text = true) {
    const fs::path path = temp_folder("actlens_test_safetensors") / name;
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t n = header_size == UINT64_MAX ? header.size() : header_size;
    out.write(reinterpret_cast<const char*>(&n), 8);
    if (write_header_text) out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    return path.string();
}

std::string safetensors_open_error(const std::string& path) {
    try {
        io::safetensors_file f(path);
    } catch (const error& e) {
        return e.what();
    }
    return "no error";
}

std::vector<unsigned char> bytes_of_floats(const std::vector<float>& v) {
    std::vector<unsigned char> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

using Catch::Contains;

} // namespace

TEST_CASE("safetensors: F32 round trip is exact and read in place", "[safetensors]") {
    tensor<float> a({2, 3}), b({4}), c({2, 1, 3, 2}), m({3, 4});
    float x = -3.25f;
    for (auto* t : {&a, &b, &c, &m})
        for (float& v : *t)
            v = (x += 0.7f);
    // A transposed (strided) view is written in its logical row-major order.
    const tensor_view<const float> mt(m.data(), shape_t{4, 3}, {{1, 4, 0, 0}});
    const std::string path = (temp_folder("actlens_test_safetensors") / "roundtrip_f32.safetensors").string();
    io::save_safetensors(path, {{"layer.a", a}, {"b", b}, {"c4", c}, {"m_t", mt}}, dtype::f32,
                         {{"format", "pt"}, {"note", "activations"}});

    const io::safetensors_file f(path);
    CHECK(f.path() == path);
    REQUIRE(f.tensors().size() == 4);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.metadata().at("note") == "activations");
    CHECK(f.contains("layer.a"));
    CHECK_FALSE(f.contains("layer"));
    CHECK(f.info("c4").shape == std::vector<std::size_t>{2, 1, 3, 2});
    CHECK(f.info("c4").dtype == dtype::f32);
    CHECK(f.info("c4").bytes() == 48);
    for (const auto& [name, t] :
         std::map<std::string, const tensor<float>*>{{"layer.a", &a}, {"b", &b}, {"c4", &c}}) {
        REQUIRE(f.is_mappable(name));
        const tensor_view<const float> v = f.mapped_view(name);
        REQUIRE(v.shape() == t->shape());
        CHECK(std::memcmp(v.data(), t->data(), t->size() * 4) == 0);
        // In place: the view points into the mapped file, and float_view leaves the storage empty.
        tensor<float> storage;
        CHECK(f.float_view(name, storage).data() == v.data());
        CHECK(storage.empty());
        CHECK(reinterpret_cast<const std::byte*>(v.data()) == f.data(f.info(name)));
    }
    const tensor<float> back = f.to_float("m_t");
    REQUIRE(back.shape() == shape_t{4, 3});
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            CHECK(back(i, j) == m(j, i));
    // Tensors are listed by position in the data section, and tile it.
    std::size_t end = 0;
    for (const auto& t : f.tensors()) {
        CHECK(t.begin == end);
        end = t.end;
    }
    // The header is padded so that the data section starts 8-byte aligned.
    std::ifstream in(path, std::ios::binary);
    std::uint64_t header_size = 0;
    in.read(reinterpret_cast<char*>(&header_size), 8);
    CHECK(header_size % 8 == 0);
    CHECK(fs::file_size(path) == 8 + header_size + end);
}

TEST_CASE("safetensors: F16 and BF16 round trips round each value to nearest even",
          "[safetensors]") {
    tensor<float> t({3, 5});
    const float specials[] = {1.0f + 0x1p-11f,
                              1.0f + 0x1p-8f,
                              1.0f + 3 * 0x1p-11f,
                              65520.0f,
                              1e-8f,
                              -0.0f,
                              3.14159265f,
                              -2.5e-5f,
                              1e30f,
                              0.1f,
                              -65504.0f,
                              0x1p-24f,
                              100.0f,
                              -1e-3f,
                              7.0f};
    std::copy(std::begin(specials), std::end(specials), t.begin());
    for (dtype type : {dtype::f16, dtype::bf16}) {
        const std::string path =
            (temp_folder("actlens_test_safetensors") / (std::string("roundtrip_") + dtype_name(type) + ".safetensors")).string();
        io::save_safetensors(path, {{"t", t}}, type);
        const io::safetensors_file f(path);
        CHECK(f.info("t").dtype == type);
        CHECK(f.info("t").bytes() == 30);
        CHECK_FALSE(f.is_mappable("t"));
        CHECK_THAT(error_of([&] { f.mapped_view("t"); }),
                   Contains("[actlens.io.206]") && Contains("only F32"));
        tensor<float> storage;
        const tensor_view<const float> v = f.float_view("t", storage);
        REQUIRE(v.shape() == t.shape());
        CHECK(v.data() == storage.data());
        for (std::size_t i = 0; i < t.size(); ++i) {
            const float want = type == dtype::f16 ? f16_to_f32(f32_to_f16(t.data()[i]))
                                                  : bf16_to_f32(f32_to_bf16(t.data()[i]));
            INFO(dtype_name(type) << " element " << i);
            CHECK(std::memcmp(&v.data()[i], &want, 4) == 0);
        }
    }
    // Spot checks of the rounding itself: ties go to the even neighbour.
    const io::safetensors_file h((temp_folder("actlens_test_safetensors") / "roundtrip_F16.safetensors").string());
    const tensor<float> hv = h.to_float("t");
    CHECK(hv(0, 0) == 1.0f);           // 1 + 2^-11: tie, down to even
    CHECK(hv(0, 2) == 1.0f + 0x1p-9f); // 1 + 3 * 2^-11: tie, up to even
    CHECK(std::isinf(hv(0, 3)));       // 65520 rounds to infinity
    CHECK(hv(2, 1) == 0x1p-24f);       // smallest subnormal
    const io::safetensors_file bf((temp_folder("actlens_test_safetensors") / "roundtrip_BF16.safetensors").string());
    CHECK(bf.to_float("t")(0, 1) == 1.0f); // 1 + 2^-8: tie, down to even
}

TEST_CASE("safetensors: scalars, empty tensors, F64, integer dtypes and misaligned F32",
          "[safetensors]") {
    // The header is padded to a multiple of 8 and one byte of gap precedes the tensor, so its F32
    // data sits at an odd address in the mapping.
    std::vector<float> values{1.5f, -2.0f, 3.25f};
    std::vector<unsigned char> data(1, 0xAA);
    auto fb = bytes_of_floats(values);
    data.insert(data.end(), fb.begin(), fb.end());
    std::string header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]}}";
    header.append((8 - header.size() % 8) % 8, ' ');
    const std::string path = write_raw("misaligned.safetensors", header, data);
    const io::safetensors_file f(path);
    CHECK(f.metadata().empty());
    CHECK_FALSE(f.is_mappable("x"));
    CHECK_THAT(error_of([&] { f.mapped_view("x"); }),
               Contains("[actlens.io.206]") && Contains("aligned"));
    tensor<float> storage;
    const tensor_view<const float> v = f.float_view("x", storage);
    REQUIRE(v.size() == 3);
    CHECK(v(0) == 1.5f);
    CHECK(v(1) == -2.0f);
    CHECK(v(2) == 3.25f);

    // A scalar, an empty tensor, F64, an I32 tensor and a rank-5 tensor in one file.
    std::vector<unsigned char> d2;
    auto put = [&](const void* p, std::size_t n) {
        d2.insert(d2.end(), static_cast<const unsigned char*>(p),
                  static_cast<const unsigned char*>(p) + n);
    };
    const float scalar = 42.5f;
    const double doubles[2] = {0.1, -1e300};
    const std::int32_t ints[2] = {7, -9};
    put(&scalar, 4);
    put(doubles, 16);
    put(ints, 8);
    const float five[2] = {1, 2};
    put(five, 8);
    const std::string h2 = R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                           R"("empty":{"dtype":"F32","shape":[2,0],"data_offsets":[4,4]},)"
                           R"("d":{"dtype":"F64","shape":[2],"data_offsets":[4,20]},)"
                           R"("i":{"dtype":"I32","shape":[2],"data_offsets":[20,28]},)"
                           R"("r5":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[28,36]},)"
                           R"("__metadata__":{"k":"v"}})";
    const io::safetensors_file g(
        write_raw("kinds.safetensors", h2 + std::string(8 - (h2.size() % 8), ' '), d2));
    CHECK(g.tensors().size() == 5);
    CHECK(g.metadata().at("k") == "v");
    CHECK(g.info("s").shape.empty());
    CHECK(g.info("s").elements == 1);
    CHECK(g.to_float("s").shape() == shape_t{1});
    CHECK(g.to_float("s")(0) == 42.5f);
    CHECK(g.info("empty").elements == 0);
    CHECK(g.to_float("empty").size() == 0);
    const tensor<float> dv = g.to_float("d");
    CHECK(dv(0) == 0.1f);
    CHECK(std::isinf(dv(1)));
    CHECK(g.info("i").dtype == dtype::i32);
    std::int32_t raw[2];
    std::memcpy(raw, g.data(g.info("i")), 8);
    CHECK(raw[1] == -9);
    CHECK_THAT(error_of([&] { g.to_float("i"); }), Contains("[actlens.io.206]") &&
                                                       Contains("'i'") && Contains("I32") &&
                                                       Contains("kinds.safetensors"));
    CHECK_THAT(error_of([&] { g.to_float("r5"); }),
               Contains("[actlens.io.206]") && Contains("rank 5"));
    CHECK_THAT(error_of([&] { g.info("nope"); }), Contains("[actlens.arg.101]") &&
                                                      Contains("'nope'") &&
                                                      Contains("kinds.safetensors"));
    CHECK(g.find("nope") == nullptr);
}

TEST_CASE("safetensors: hostile headers give actlens::error naming the file and the field",
          "[safetensors][errors]") {
    const std::vector<unsigned char> data24 = bytes_of_floats({1, 2, 3, 4, 5, 6});
    auto file = [&](const std::string& name, const std::string& header) {
        return safetensors_open_error(write_raw(name, header, data24));
    };
    auto tensor_json = [](const std::string& dtype, const std::string& shape,
                          const std::string& offsets) {
        return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets +
               "}";
    };
    const std::string good = tensor_json("F32", "[2,3]", "[0,24]");

    CHECK_THAT(safetensors_open_error("/nonexistent/x.safetensors"),
               Contains("[actlens.io.201]") && Contains("/nonexistent"));
    // Too short for the header size; header size past the end; absurd header size.
    const fs::path empty = temp_folder("actlens_test_safetensors") / "empty.safetensors";
    std::ofstream(empty).close();
    CHECK_THAT(safetensors_open_error(empty.string()),
               Contains("[actlens.io.202]") && Contains("'header size'"));
    CHECK_THAT(safetensors_open_error(write_raw("past.safetensors", "{}", {}, 100)),
               Contains("[actlens.io.202]") &&
                   Contains("header size 100 is past the end of the file (10 bytes)") &&
                   Contains("past.safetensors"));
    CHECK_THAT(safetensors_open_error(write_raw("giant.safetensors", "{}", {}, std::uint64_t(1) << 40)),
               Contains("[actlens.io.204]") && Contains("exceeds the limit"));
    CHECK_THAT(safetensors_open_error(write_raw("max.safetensors", "{}", {}, UINT64_MAX - 1)),
               Contains("[actlens.io.204]"));
    // JSON that does not parse, or is not an object.
    CHECK_THAT(file("badjson.safetensors", "{\"a\": {\"dtype\": \"F32\", "),
               Contains("[actlens.io.204]") && Contains("not valid JSON") &&
                   Contains("badjson.safetensors"));
    CHECK_THAT(file("nul.safetensors", std::string("{\"a\"\0:1}", 8)), Contains("not valid JSON"));
    CHECK_THAT(file("utf8.safetensors", "{\"\xff\":" + good + "}"), Contains("not valid JSON"));
    CHECK_THAT(file("array.safetensors", "[1, 2]"),
               Contains("[actlens.io.204]") && Contains("must be a JSON object"));
    CHECK_THAT(file("notobj.safetensors", "{\"a\": 3}"),
               Contains("tensor 'a' must be described by an object"));
    // Missing and mistyped fields.
    CHECK_THAT(file("nodtype.safetensors", R"({"w":{"shape":[2,3],"data_offsets":[0,24]}})"),
               Contains("[actlens.io.204]") && Contains("tensor 'w' has no 'dtype' field"));
    CHECK_THAT(file("noshape.safetensors", R"({"w":{"dtype":"F32","data_offsets":[0,24]}})"),
               Contains("tensor 'w' has no 'shape' field"));
    CHECK_THAT(file("nooffsets.safetensors", R"({"w":{"dtype":"F32","shape":[2,3]}})"),
               Contains("tensor 'w' has no 'data_offsets' field"));
    CHECK_THAT(file("dtype_num.safetensors",
                    "{\"w\":" + tensor_json("F32", "[2,3]", "[0,24]").replace(9, 5, "32") + "}"),
               Contains("field 'dtype' must be a string"));
    CHECK_THAT(
        file("unknown_dtype.safetensors", "{\"w\":" + tensor_json("Q4_K", "[2,3]", "[0,24]") + "}"),
        Contains("[actlens.io.206]") && Contains("tensor 'w' has dtype 'Q4_K'"));
    CHECK_THAT(
        file("shape_neg.safetensors", "{\"w\":" + tensor_json("F32", "[2,-3]", "[0,24]") + "}"),
        Contains("[actlens.io.204]") &&
            Contains("tensor 'w' shape has an extent that is not a non-negative integer: -3"));
    CHECK_THAT(
        file("shape_float.safetensors", "{\"w\":" + tensor_json("F32", "[2,3.0]", "[0,24]") + "}"),
        Contains("not a non-negative integer"));
    CHECK_THAT(
        file("shape_str.safetensors", "{\"w\":" + tensor_json("F32", "\"2x3\"", "[0,24]") + "}"),
        Contains("field 'shape' must be an array"));
    CHECK_THAT(
        file("offsets3.safetensors", "{\"w\":" + tensor_json("F32", "[2,3]", "[0,12,24]") + "}"),
        Contains("'data_offsets' must be [begin, end]"));
    CHECK_THAT(
        file("offsets_neg.safetensors", "{\"w\":" + tensor_json("F32", "[2,3]", "[-24,0]") + "}"),
        Contains("'data_offsets' must be [begin, end]"));
    CHECK_THAT(
        file("offsets_rev.safetensors", "{\"w\":" + tensor_json("F32", "[0]", "[24,0]") + "}"),
        Contains("end before they begin"));
    CHECK_THAT(file("metadata.safetensors", R"({"__metadata__":{"n":3}})"),
               Contains("[actlens.io.204]") &&
                   Contains("'__metadata__' entry 'n' must be a string"));
    CHECK_THAT(file("metadata_arr.safetensors", R"({"__metadata__":[1]})"),
               Contains("'__metadata__' must be an object"));
    // Shapes whose element or byte count overflows.
    CHECK_THAT(
        file("overflow.safetensors",
             "{\"w\":" + tensor_json("F32", "[4294967296,4294967296,4294967296]", "[0,24]") + "}"),
        Contains("[actlens.io.205]") && Contains("tensor 'w'"));
    // Fuzzer finding: nesting that would overflow the stack in nlohmann's dump() (the old error
    // messages dumped the value) or destructor is refused before parsing, wherever it is.
    const std::string deep = std::string(24000, '[') + std::string(24000, ']');
    for (const std::string& header : {"{\"w\":" + deep + "}", "{\"w\":" + tensor_json("F32", deep, "[0,24]") + "}",
                                      "{\"__metadata__\":{\"k\":" + deep + "}}", deep})
        CHECK_THAT(file("deep.safetensors", header),
                   Contains("[actlens.io.204]") && Contains("nests deeper than 128 levels") && Contains("deep.safetensors"));
    // Values in messages are cut or summarised, never dumped whole.
    const std::string huge(1000000, 'x');
    const std::string near_deep = std::string(100, '[') + std::string(100, ']');
    for (const std::string& header :
         {"{\"w\":" + tensor_json(huge, "[2,3]", "[0,24]") + "}",
          "{\"w\":" + tensor_json("F32", "[2,3]", "[0,\"" + huge + "\"]") + "}",
          "{\"w\":" + tensor_json("F32", "[2,\"" + huge + "\"]", "[0,24]") + "}",
          "{\"__metadata__\":{\"k\":" + near_deep + "}}", "{\"w\":" + near_deep + "}",
          "{\"w\":" + tensor_json("F32", near_deep, "[0,24]") + "}"}) {
        const std::string message = file("huge_value.safetensors", header);
        INFO(message.substr(0, 300));
        CHECK_THAT(message, Contains("[actlens.io.20"));
        CHECK(message.size() < 600);
    }
    // Fuzzer finding: a 0 extent makes the tensor empty, but the strides of the other extents were
    // still formed (signed overflow in tensor_view). Refused wherever the zero is.
    for (const char* shape : {"[0,4294967296,4294967296]", "[4294967296,4294967296,0]", "[65536,0,65536,65536,65536]"})
        CHECK_THAT(file("zero_extent.safetensors", "{\"w\":" + tensor_json("F32", shape, "[0,0]") + "}"),
                   Contains("[actlens.io.205]") && Contains("tensor 'w'") && Contains("(a 0 counted as 1)"));
    // A tensor of a million extents opens (safetensors has no rank limit) but is named by its first
    // few extents when it is read.
    std::string long_shape = "[1";
    for (int i = 0; i < 1000000; ++i) long_shape += ",1";
    const io::safetensors_file many(
        write_raw("long_shape.safetensors", "{\"w\":" + tensor_json("F32", long_shape + ",6]", "[0,24]") + "}", data24));
    const std::string rank_error = error_of([&] { (void)many.to_float("w"); });
    CHECK_THAT(rank_error, Contains("[actlens.io.206]") && Contains("[1, 1, 1, 1, 1, 1, 1, 1, ... (1000002 extents)]"));
    CHECK(rank_error.size() < 300);
    CHECK_THAT(file("overflow_bytes.safetensors",
                    "{\"w\":" + tensor_json("F64", "[4611686018427387904]", "[0,24]") + "}"),
               Contains("[actlens.io.205]") && Contains("more bytes than size_t holds"));
    CHECK_THAT(file("huge_extent.safetensors",
                    "{\"w\":" + tensor_json("F32", "[18446744073709551616]", "[0,24]") + "}"),
               Contains("[actlens.io.204]"));
    // dtype x shape disagreeing with the byte span.
    CHECK_THAT(
        file("size_mismatch.safetensors", "{\"w\":" + tensor_json("F32", "[2,3]", "[0,20]") + "}"),
        Contains("[actlens.io.204]") &&
            Contains("tensor 'w' has dtype F32 and shape [2, 3], which need 24 bytes, but its "
                     "data_offsets [0, 20] span 20"));
    CHECK_THAT(file("dtype_mismatch.safetensors",
                    "{\"w\":" + tensor_json("BF16", "[2,3]", "[0,24]") + "}"),
               Contains("need 12 bytes"));
    // Spans outside the data section (24 bytes), including ones whose end would wrap around.
    CHECK_THAT(file("outside.safetensors", "{\"w\":" + tensor_json("F32", "[2,3]", "[4,28]") + "}"),
               Contains("[actlens.io.202]") &&
                   Contains("tensor 'w' data_offsets [4, 28] extend past the end of the "
                            "data section (24 bytes)"));
    CHECK_THAT(
        file("far.safetensors",
             "{\"w\":" + tensor_json("F32", "[1]", "[18446744073709551612,18446744073709551615]") +
                 "}"),
        Contains("need 4 bytes"));
    CHECK_THAT(
        file("far2.safetensors",
             "{\"w\":" + tensor_json("F32", "[1]", "[18446744073709551611,18446744073709551615]") +
                 "}"),
        Contains("[actlens.io.202]"));
    // Overlapping tensors, and one name twice (JSON parsers would silently keep one).
    CHECK_THAT(file("overlap.safetensors", "{\"a\":" + tensor_json("F32", "[3]", "[0,12]") +
                                               ",\"b\":" + tensor_json("F32", "[3]", "[8,20]") +
                                               "}"),
               Contains("[actlens.io.204]") &&
                   Contains("tensors 'a' (bytes [0, 12)) and 'b' (bytes [8, 20)) overlap"));
    CHECK_THAT(file("overlap_inside.safetensors",
                    "{\"big\":" + tensor_json("F32", "[6]", "[0,24]") +
                        ",\"small\":" + tensor_json("F32", "[1]", "[8,12]") + "}"),
               Contains("'big'") && Contains("'small'") && Contains("overlap"));
    CHECK_THAT(file("duplicate.safetensors", "{\"a\":" + good + ",\"a\":" + good + "}"),
               Contains("[actlens.io.204]") && Contains("names tensor 'a' twice") &&
                   Contains("duplicate.safetensors"));
    CHECK_THAT(file("duplicate_key.safetensors",
                    R"({"a":{"dtype":"F32","dtype":"F16","shape":[2,3],"data_offsets":[0,24]}})"),
               Contains("entry 'a' has the key 'dtype' twice"));
    // Adjacent tensors and gaps are fine.
    CHECK(file("adjacent.safetensors", "{\"a\":" + tensor_json("F32", "[3]", "[0,12]") +
                                           ",\"b\":" + tensor_json("F32", "[2]", "[16,24]") +
                                           ",\"z\":" + tensor_json("F32", "[0]", "[12,12]") +
                                           "}") == "no error");
}

TEST_CASE("safetensors: the writer rejects what it cannot write", "[safetensors][errors]") {
    tensor<float> t({2});
    const std::string path = (temp_folder("actlens_test_safetensors") / "w.safetensors").string();
    CHECK_THAT(error_of([&] {
                   io::save_safetensors(path, {{"t", t}}, dtype::i32);
               }),
               Contains("[actlens.arg.101]") && Contains("I32"));
    CHECK_THAT(error_of([&] {
                   io::save_safetensors(path, {{"", t}});
               }),
               Contains("[actlens.arg.101]"));
    CHECK_THAT(error_of([&] {
                   io::save_safetensors(path, {{"__metadata__", t}});
               }),
               Contains("[actlens.arg.101]"));
    CHECK_THAT(error_of([&] {
                   io::save_safetensors(path, {{"v", tensor_view<const float>()}});
               }),
               Contains("'v' is an empty view"));
    CHECK_THAT(error_of([&] {
                   io::save_safetensors(path, {{"bad\xff", t}});
               }),
               Contains("not UTF-8"));
    CHECK_THAT(error_of([&] {
                   io::save_safetensors("/nonexistent/dir/x.safetensors", {{"t", t}});
               }),
               Contains("[actlens.io.201]") && Contains("/nonexistent/dir/x.safetensors"));
    // An empty file of tensors is valid.
    io::save_safetensors(path, {});
    CHECK(io::safetensors_file(path).tensors().empty());
}
