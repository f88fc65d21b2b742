// Tests of actlens/io/gguf.hpp, io/gguf_model.hpp and methods/control_vector.hpp.
//
// Independent references: files written by llama.cpp's own Python writer (gguf-py; committed with
// tests/fixtures/gguf/make_gguf_fixtures.py), hand-assembled bytes for Q8_0 blocks and hostile
// headers, and the llama2.c stories260K model, whose logits the GGUF models must reproduce.
#include "test_files.hpp"
#include "test_helpers.hpp"
#include "paths.hpp"

#include <actlens/core/dtype.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/methods/control_vector.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/gguf_vocab.hpp>
#include <actlens/tokenizer/load.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace actlens;
namespace fs = std::filesystem;

namespace {

const std::string gguf_fixtures = actlens::test_paths::fixture("gguf");
const std::string llama2c_model = actlens::test_paths::model("stories260K.bin");

std::string write_bytes(const std::string& name, const std::vector<unsigned char>& bytes) {
    const fs::path path = temp_folder("actlens_test_gguf") / name;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                std::streamsize(bytes.size()));
    return path.string();
}

std::vector<unsigned char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

std::string gguf_open_error(const std::string& path) {
    return error_of([&] { io::gguf_file f(path); });
}

/// Little-endian GGUF bytes assembled by hand.
struct raw_gguf {
    std::vector<unsigned char> b;
    template <class V>
    raw_gguf& put(V v) {
        const auto* p = reinterpret_cast<const unsigned char*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    raw_gguf& u8(std::uint8_t v) { return put(v); }
    raw_gguf& u32(std::uint32_t v) { return put(v); }
    raw_gguf& u64(std::uint64_t v) { return put(v); }
    raw_gguf& str(const std::string& s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    raw_gguf& header(std::uint64_t tensors, std::uint64_t kvs, std::uint32_t version = 3) {
        b.insert(b.end(), {'G', 'G', 'U', 'F'});
        return u32(version).u64(tensors).u64(kvs);
    }
    /// A tensor info: name, ne, type, offset.
    raw_gguf& tensor(const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(ne.size()));
        for (std::uint64_t e : ne) u64(e);
        return u32(type).u64(offset);
    }
    raw_gguf& pad(std::size_t alignment = 32) {
        while (b.size() % alignment) b.push_back(0);
        return *this;
    }
    raw_gguf& zeros(std::size_t n) {
        b.insert(b.end(), n, 0);
        return *this;
    }
};

/// A file with one kv and two F32 tensors [2] at offsets 0 and 32 (valid; variants break it).
raw_gguf two_tensors(std::uint64_t second_offset = 32, std::uint32_t second_type = 0,
                     std::vector<std::uint64_t> second_ne = {2}) {
    raw_gguf r;
    r.header(2, 1).str("general.architecture").u32(8).str("test");
    r.tensor("a", {2}, 0, 0).tensor("b", second_ne, second_type, second_offset).pad();
    return r.zeros(64);
}

/// The stories260K model with every 2-D weight replaced by `round(w)` (norms unchanged).
template <class F>
transformer with_rounded_weights(const transformer& m, F&& round) {
    model_weights<float> w;
    const model_weights<float>& src = m.weights();
    w.owners = src.owners;
    auto matrix = [&](const tensor_view<const float>& v) {
        tensor<float> t = tensor<float>::copy_of(v);
        round(t.data(), v.extent(0), v.extent(1));
        return w.own(std::move(t));
    };
    w.token_embedding = matrix(src.token_embedding);
    w.layers = src.layers;
    for (layer_weights<float>& l : w.layers) {
        l.w_q = matrix(l.w_q);
        l.w_k = matrix(l.w_k);
        l.w_v = matrix(l.w_v);
        l.w_o = matrix(l.w_o);
        l.w_gate = matrix(l.w_gate);
        l.w_in = matrix(l.w_in);
        l.w_out = matrix(l.w_out);
    }
    w.final_norm_weight = src.final_norm_weight;
    w.unembedding = w.token_embedding;
    return transformer(m.config(), std::move(w));
}

void round_f16(float* p, std::size_t rows, std::size_t cols) {
    for (std::size_t i = 0; i < rows * cols; ++i) p[i] = f16_to_f32(f32_to_f16(p[i]));
}

/// Q8_0 as ggml's reference quantiser defines it: per 32 values d = max|x| / 127, q = round(x / d)
/// (computed as x * (1/d), halves away from zero), stored d as f16; rows whose length is not a
/// multiple of 32 stay F16, as the fixture script (and llama.cpp's converter) leaves them.
void round_q8_0(float* p, std::size_t rows, std::size_t cols) {
    if (cols % 32 != 0) return round_f16(p, rows, cols);
    for (std::size_t b = 0; b < rows * cols; b += 32) {
        float amax = 0;
        for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::abs(p[b + i]));
        const float d = amax / 127.0f;
        const float id = d == 0.0f ? 0.0f : 1.0f / d;
        const float d16 = f16_to_f32(f32_to_f16(d));
        for (std::size_t i = 0; i < 32; ++i) p[b + i] = d16 * std::round(p[b + i] * id);
    }
}

const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 7, 99, 500};

} // namespace

TEST_CASE("gguf: metadata and tensors written by llama.cpp's gguf-py read back exactly", "[gguf]") {
    const io::gguf_file f(gguf_fixtures + "/metadata_types.gguf");
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.get_string("general.architecture") == "test");
    using io::gguf_type;
    CHECK(f.value("t.u8").type() == gguf_type::u8);
    CHECK(f.get_uint("t.u8") == 200);
    CHECK(f.value("t.i8").type() == gguf_type::i8);
    CHECK(f.value("t.i8").as_int() == -100);
    CHECK(f.value("t.u16").type() == gguf_type::u16);
    CHECK(f.get_uint("t.u16") == 60000);
    CHECK(f.value("t.i16").as_int() == -30000);
    CHECK(f.value("t.u32").type() == gguf_type::u32);
    CHECK(f.get_uint("t.u32") == 4000000000u);
    CHECK(f.value("t.i32").type() == gguf_type::i32);
    CHECK(f.value("t.i32").as_int() == -2000000000);
    CHECK(f.value("t.f32").type() == gguf_type::f32);
    CHECK(f.get_double("t.f32") == 1.5);
    CHECK(f.value("t.bool").as_bool());
    CHECK(f.get_string("t.string") == "h\xc3\xa9llo");
    CHECK(f.value("t.u64").type() == gguf_type::u64);
    CHECK(f.get_uint("t.u64") == 18000000000000000000ull);
    CHECK(f.value("t.i64").as_int() == -9000000000000000000ll);
    CHECK(f.value("t.f64").type() == gguf_type::f64);
    CHECK(f.get_double("t.f64") == -2.25);
    const io::gguf_value& ints = f.value("t.array_i32");
    REQUIRE(ints.element_type() == gguf_type::i32);
    REQUIRE(ints.size() == 3);
    CHECK(ints.item(1).type() == gguf_type::i32);
    CHECK(ints.item(1).as_int() == -2);
    CHECK(ints.to_ints() == std::vector<std::int64_t>{1, -2, 3});
    CHECK(ints.to_doubles() == std::vector<double>{1, -2, 3});
    CHECK_THAT(error_of([&] { (void)ints.item(3); }), Catch::Contains("[actlens.arg.103]"));
    CHECK_THAT(error_of([&] { (void)ints.to_strings(); }), Catch::Contains("array of i32"));
    const io::gguf_value& strings = f.value("t.array_string");
    CHECK(strings.to_strings() == std::vector<std::string>{"a", "", "xyz"});
    CHECK(strings.item(2).as_string() == "xyz");
    const io::gguf_value& nested = f.value("t.array_nested");
    REQUIRE(nested.element_type() == gguf_type::array);
    REQUIRE(nested.size() == 2);
    CHECK(nested.item(0).element_type() == gguf_type::i32);
    CHECK(nested.item(0).to_ints() == std::vector<std::int64_t>{1, 2});
    CHECK(nested.item(1).to_ints() == std::vector<std::int64_t>{3});
    // Typed reads name the key when the type is wrong.
    CHECK_THAT(error_of([&] { (void)f.get_string("t.u8"); }),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'t.u8'") && Catch::Contains("u8"));
    CHECK_THAT(error_of([&] { (void)f.get_uint("t.i64"); }), Catch::Contains("must not be negative"));
    CHECK_THAT(error_of([&] { (void)f.value("t.missing"); }), Catch::Contains("'t.missing'"));

    const std::vector<float> m = {1.0f, -2.0f, 0.5f, 3.25f, 0.0f, -0.125f};
    for (const char* name : {"m.f32", "m.f16", "m.bf16"}) {
        INFO(name);
        const io::gguf_tensor_info& t = f.tensor_info(name);
        CHECK(t.ne == std::vector<std::uint64_t>{3, 2});
        CHECK(t.shape() == shape_t{2, 3});
        const tensor<float> v = f.to_float(name);
        CHECK(std::vector<float>(v.data(), v.data() + v.size()) == m);
    }
    CHECK(f.is_mappable("m.f32"));
    CHECK_FALSE(f.is_mappable("m.f16"));
    // In place: the view points into the mapping, at the data section plus the tensor's offset.
    CHECK(reinterpret_cast<const std::byte*>(f.mapped_view("m.f32").data()) == f.data(f.tensor_info("m.f32")));
    CHECK_THAT(error_of([&] { (void)f.mapped_view("m.f16"); }), Catch::Contains("[actlens.io.206]"));

    // Q8_0 rows r = 0, 1 hold x_k = (k - 16) * 0.5 * (r + 1); max |x| = 8 (r + 1) = 127 d.
    const io::gguf_tensor_info& q = f.tensor_info("m.q8_0");
    CHECK(q.type == io::ggml_type::q8_0);
    CHECK(q.bytes == 2 * 34);
    const tensor<float> qv = f.to_float("m.q8_0");
    REQUIRE(qv.shape() == shape_t{2, 32});
    for (int r = 0; r < 2; ++r) {
        const float d = 8.0f * float(r + 1) / 127.0f;
        const float d16 = f16_to_f32(f32_to_f16(d));
        for (int k = 0; k < 32; ++k) {
            const float x = float(k - 16) * 0.5f * float(r + 1);
            CHECK(qv(r, k) == d16 * std::round(x / d));
        }
    }
    CHECK(qv(0, 0) == -127.0f * f16_to_f32(0x2c08)); // -8 is -127 d exactly; d's f16 bits as stored
}

TEST_CASE("gguf: Q8_0 blocks dequantise to d * q (hand-assembled)", "[gguf]") {
    // One tensor of ne [64, 1]: two blocks. Block 0: d = 0.5 (f16 0x3800), q = -128 .. -97;
    // block 1: d = -0.25 (0xB400), q = 0, 1, -1, 2, -2, ...
    raw_gguf r;
    r.header(1, 0).tensor("q", {64, 1}, 8, 0).pad();
    std::vector<float> expect;
    r.put<std::uint16_t>(0x3800);
    for (int i = 0; i < 32; ++i) {
        r.put<std::int8_t>(static_cast<std::int8_t>(-128 + i));
        expect.push_back(0.5f * float(-128 + i));
    }
    r.put<std::uint16_t>(0xB400);
    for (int i = 0; i < 32; ++i) {
        const int q = (i % 2 ? 1 : -1) * ((i + 1) / 2);
        r.put<std::int8_t>(static_cast<std::int8_t>(q));
        expect.push_back(-0.25f * float(q));
    }
    const io::gguf_file f(write_bytes("q8_0.gguf", r.b));
    const tensor<float> v = f.to_float("q");
    CHECK(v.shape() == shape_t{1, 64});
    CHECK(std::vector<float>(v.data(), v.data() + v.size()) == expect);
    CHECK(expect[0] == -64.0f);
    CHECK(expect[33] == -0.25f); // q = 1 with d = -0.25
}

TEST_CASE("gguf: writer -> reader round trip of every metadata type and tensor type", "[gguf]") {
    using io::gguf_value;
    for (std::size_t alignment : {std::size_t(32), std::size_t(64), std::size_t(8)}) {
        INFO("alignment " << alignment);
        io::gguf_writer w(alignment);
        const std::vector<std::pair<std::string, gguf_value>> kvs = {
            {"k.u8", gguf_value::u8(255)},
            {"k.i8", gguf_value::i8(-128)},
            {"k.u16", gguf_value::u16(65535)},
            {"k.i16", gguf_value::i16(-32768)},
            {"k.u32", gguf_value::u32(4294967295u)},
            {"k.i32", gguf_value::i32(INT32_MIN)},
            {"k.u64", gguf_value::u64(UINT64_MAX)},
            {"k.i64", gguf_value::i64(INT64_MIN)},
            {"k.f32", gguf_value::f32(-0.1f)},
            {"k.f64", gguf_value::f64(1e300)},
            {"k.bool", gguf_value::boolean(false)},
            {"k.string", gguf_value::string(std::string("with\0nul", 8))},
            {"k.empty_string", gguf_value::string("")},
            {"k.strings", gguf_value::string_array({"x", "", "zz"})},
            {"k.floats", gguf_value::f32_array({1.0f, -0.0f})},
            {"k.empty_array", gguf_value::array(io::gguf_type::u64, {})},
            {"k.nested", gguf_value::array(io::gguf_type::array,
                                           {gguf_value::i32_array({1, 2}), gguf_value::i32_array({})})},
        };
        for (const auto& [k, v] : kvs) w.set(k, v);
        tensor<float> a({2, 3, 5});
        for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = 0.1f * float(i) - 1.3f;
        tensor<float> b({7});
        for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = std::ldexp(1.0f, int(i) * 5 - 20) * 1.0009765f;
        w.add_tensor("a.f32", a.view());
        w.add_tensor("a.f16", a.view(), io::ggml_type::f16);
        w.add_tensor("a.bf16", a.view(), io::ggml_type::bf16);
        w.add_tensor("b.f16", b.view(), io::ggml_type::f16);
        const std::string path = (temp_folder("actlens_test_gguf") / ("round_trip_" + std::to_string(alignment) + ".gguf")).string();
        w.write(path);

        const io::gguf_file f(path);
        CHECK(f.version() == 3);
        CHECK(f.alignment() == alignment);
        CHECK(f.contains("general.alignment") == (alignment != 32));
        CHECK(f.data_offset() % alignment == 0);
        for (const auto& [k, v] : kvs) {
            INFO(k);
            REQUIRE(f.find(k));
            CHECK(*f.find(k) == v);
        }
        CHECK(f.value("k.string").as_string().size() == 8);
        REQUIRE(f.tensors().size() == 4);
        for (const io::gguf_tensor_info& t : f.tensors()) CHECK(t.offset % alignment == 0);
        CHECK(f.tensor_info("a.f32").ne == std::vector<std::uint64_t>{5, 3, 2});
        CHECK(f.tensor_info("a.f16").type == io::ggml_type::f16);
        CHECK(f.tensor_info("a.bf16").type == io::ggml_type::bf16);
        REQUIRE(f.is_mappable("a.f32"));
        const tensor_view<const float> mapped = f.mapped_view("a.f32");
        CHECK(mapped.shape() == a.shape());
        CHECK(std::equal(a.data(), a.data() + a.size(), mapped.data()));
        const tensor<float> h = f.to_float("a.f16"), bf = f.to_float("a.bf16"), bh = f.to_float("b.f16");
        for (std::size_t i = 0; i < a.size(); ++i) {
            CHECK(h.data()[i] == f16_to_f32(f32_to_f16(a.data()[i])));
            CHECK(bf.data()[i] == bf16_to_f32(f32_to_bf16(a.data()[i])));
        }
        for (std::size_t i = 0; i < b.size(); ++i) CHECK(bh.data()[i] == f16_to_f32(f32_to_f16(b.data()[i])));
        tensor<float> storage;
        CHECK(f.float_view("a.f32", storage).data() == mapped.data());
        CHECK(storage.empty());
    }
    // Strided views are written densely.
    tensor<float> m({3, 4});
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = float(i);
    const tensor_view<const float> column(m.data() + 1, shape_t{3}, {4, 0, 0, 0});
    io::gguf_writer w;
    w.add_tensor("column", column);
    w.write((temp_folder("actlens_test_gguf") / "strided.gguf").string());
    const tensor<float> c = io::gguf_file((temp_folder("actlens_test_gguf") / "strided.gguf").string()).to_float("column");
    CHECK(std::vector<float>(c.data(), c.data() + 3) == std::vector<float>{1, 5, 9});

    // Writer arguments.
    io::gguf_writer bad;
    bad.set("x", gguf_value::u8(1));
    CHECK_THAT(error_of([&] { bad.set("x", gguf_value::u8(2)); }), Catch::Contains("[actlens.arg.101]") && Catch::Contains("'x'"));
    CHECK_THAT(error_of([&] { bad.set("general.alignment", gguf_value::u32(64)); }), Catch::Contains("constructor"));
    CHECK_THAT(error_of([&] { bad.set("", gguf_value::u8(2)); }), Catch::Contains("[actlens.arg.101]"));
    CHECK_THAT(error_of([&] { bad.add_tensor("q", m.view(), io::ggml_type::q8_0); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("Q8_0"));
    CHECK_THAT(error_of([&] { bad.add_tensor("e", tensor_view<const float>()); }), Catch::Contains("empty"));
    bad.add_tensor("t", m.view());
    CHECK_THAT(error_of([&] { bad.add_tensor("t", m.view()); }), Catch::Contains("'t' is added twice"));
    CHECK_THAT(error_of([] { io::gguf_writer w3(48); }), Catch::Contains("power of two"));
    CHECK_THAT(error_of([] { (void)gguf_value::array(io::gguf_type::u8, {gguf_value::i8(1)}); }),
               Catch::Contains("item 0 has type i8"));
    CHECK_THAT(error_of([&] { bad.write("/nonexistent/dir/x.gguf"); }), Catch::Contains("[actlens.io.201]"));
}

TEST_CASE("gguf: every truncation of a valid file gives io.202, never a crash", "[gguf][errors]") {
    io::gguf_writer w;
    w.set("general.architecture", io::gguf_value::string("test"));
    w.set("n", io::gguf_value::array(io::gguf_type::array, {io::gguf_value::string_array({"ab", "c"})}));
    w.set("x", io::gguf_value::f64(2.0));
    tensor<float> a({2, 3});
    w.add_tensor("a", a.view());
    w.add_tensor("b", a.view(), io::ggml_type::f16);
    const std::string path = (temp_folder("actlens_test_gguf") / "whole.gguf").string();
    w.write(path);
    const std::vector<unsigned char> whole = read_bytes(path);
    REQUIRE_NOTHROW(io::gguf_file(path));
    // The last tensor's data ends 12 bytes after its offset; padding after it is optional.
    const io::gguf_file f(path);
    const std::size_t end = f.data_offset() + f.tensor_info("b").offset + f.tensor_info("b").bytes;
    for (std::size_t n = 0; n < end; ++n) {
        INFO("truncated to " << n << " bytes");
        const std::string cut = write_bytes("cut.gguf", std::vector<unsigned char>(whole.begin(), whole.begin() + n));
        const std::string e = gguf_open_error(cut);
        CHECK_THAT(e, Catch::Contains("[actlens.io.202]") && Catch::Contains("cut.gguf"));
    }
    CHECK_NOTHROW(io::gguf_file(write_bytes("cut.gguf", std::vector<unsigned char>(whole.begin(), whole.begin() + end))));

    // Every header byte overwritten with 0x00, 0x7f, 0xff: the file opens and its tensors read, or
    // an actlens::error says why; nothing else escapes.
    std::size_t rejected = 0;
    for (std::size_t pos = 0; pos < f.data_offset(); ++pos)
        for (unsigned char value : {0x00, 0x7f, 0xff}) {
            std::vector<unsigned char> bytes = whole;
            if (bytes[pos] == value) continue;
            bytes[pos] = value;
            const std::string p = write_bytes("mutated.gguf", bytes);
            try {
                const io::gguf_file m(p);
                for (const io::gguf_tensor_info& t : m.tensors()) (void)m.to_float(t.name);
            } catch (const error&) {
                ++rejected;
            } catch (const std::exception& e) {
                FAIL("byte " << pos << " = " << int(value) << ": " << e.what());
            }
        }
    CHECK(rejected > f.data_offset());
}

TEST_CASE("gguf: is_gguf_file tells GGUF files from llama2.c checkpoints by their magic", "[gguf]") {
    CHECK(io::is_gguf_file(gguf_fixtures + "/stories260K_f16.gguf"));
    CHECK(io::is_gguf_file(gguf_fixtures + "/control_vector.gguf"));
    CHECK_FALSE(io::is_gguf_file(llama2c_model));
    require_error([] { io::is_gguf_file("/nonexistent/model.gguf"); }, errc::file_open, "/nonexistent/model.gguf");
}

TEST_CASE("gguf: hostile headers give actlens::error naming the file and field", "[gguf][errors]") {
    const auto err = [](const std::string& name, const raw_gguf& r) { return gguf_open_error(write_bytes(name, r.b)); };
    CHECK_NOTHROW(io::gguf_file(write_bytes("valid.gguf", two_tensors().b)));

    raw_gguf magic;
    magic.b = {'G', 'G', 'M', 'L', 3, 0, 0, 0};
    magic.zeros(16);
    CHECK_THAT(err("magic.gguf", magic), Catch::Contains("[actlens.io.203]") && Catch::Contains("magic.gguf"));
    CHECK_THAT(err("v1.gguf", raw_gguf().header(0, 0, 1)),
               Catch::Contains("[actlens.io.206]") && Catch::Contains("version 1"));
    CHECK_THAT(err("v4.gguf", raw_gguf().header(0, 0, 4)), Catch::Contains("[actlens.io.206]") && Catch::Contains("version 4"));
    CHECK_NOTHROW(io::gguf_file(write_bytes("v2.gguf", raw_gguf().header(0, 0, 2).b)));
    CHECK_NOTHROW(io::gguf_file(write_bytes("empty_v3.gguf", raw_gguf().header(0, 0).b)));

    // Counts and lengths far beyond the file fail before anything is allocated.
    CHECK_THAT(err("kv_count.gguf", raw_gguf().header(0, UINT64_MAX)),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("metadata_kv_count"));
    CHECK_THAT(err("tensor_count.gguf", raw_gguf().header(uint64_t(1) << 60, 0)),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("tensor_count"));
    CHECK_THAT(err("key_length.gguf", raw_gguf().header(0, 1).u64(UINT64_MAX - 3).zeros(16)),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("key"));
    CHECK_THAT(err("string_length.gguf", raw_gguf().header(0, 1).str("k").u32(8).u64(1ull << 40).zeros(16)),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("'k'"));
    CHECK_THAT(err("array_count.gguf", raw_gguf().header(0, 1).str("k").u32(9).u32(4).u64(1ull << 62).zeros(16)),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("'k'") && Catch::Contains("u32"));
    CHECK_THAT(err("empty_key.gguf", raw_gguf().header(0, 1).str("").u32(0).u8(1)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("metadata entry 0"));

    // Unknown value types, bad bools, deep nesting, duplicate keys.
    CHECK_THAT(err("value_type.gguf", raw_gguf().header(0, 1).str("k").u32(13).zeros(8)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("unknown value type 13"));
    CHECK_THAT(err("element_type.gguf", raw_gguf().header(0, 1).str("k").u32(9).u32(99).u64(1).zeros(8)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("unknown value type 99"));
    CHECK_THAT(err("bool.gguf", raw_gguf().header(0, 1).str("flag").u32(7).u8(2)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'flag'"));
    CHECK_THAT(err("bool_array.gguf", raw_gguf().header(0, 1).str("flags").u32(9).u32(7).u64(3).u8(1).u8(0).u8(5)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'flags'") && Catch::Contains("item 2"));
    raw_gguf deep;
    deep.header(0, 1).str("deep").u32(9);
    for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
    deep.zeros(64);
    CHECK_THAT(err("deep.gguf", deep), Catch::Contains("[actlens.io.204]") && Catch::Contains("nests arrays"));
    CHECK_THAT(err("dup_key.gguf", raw_gguf().header(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'k' appears twice"));
    CHECK_THAT(err("alignment.gguf", raw_gguf().header(0, 1).str("general.alignment").u32(4).u32(24)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("power of two"));
    CHECK_THAT(err("alignment_type.gguf", raw_gguf().header(0, 1).str("general.alignment").u32(10).u64(32)),
               Catch::Contains("'general.alignment' must be u32"));

    // Tensor infos.
    CHECK_THAT(err("ggml_type.gguf", two_tensors(32, 31)),
               Catch::Contains("[actlens.io.206]") && Catch::Contains("'b'") && Catch::Contains("unknown ggml type 31"));
    CHECK_THAT(err("q8_row.gguf", two_tensors(32, 8, {33})),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("Q8_0") && Catch::Contains("ne[0] = 33"));
    CHECK_THAT(err("misaligned.gguf", two_tensors(16)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'b'") && Catch::Contains("offset 16"));
    CHECK_THAT(err("outside.gguf", two_tensors(64)),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("'b'") && Catch::Contains("past the end"));
    CHECK_THAT(err("far_outside.gguf", two_tensors(uint64_t(1) << 62)), Catch::Contains("'b'"));
    CHECK_THAT(err("overlap.gguf", two_tensors(0)),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'a'") && Catch::Contains("'b'") &&
                   Catch::Contains("overlap"));
    CHECK_THAT(err("overflow.gguf", two_tensors(32, 0, {uint64_t(1) << 40, uint64_t(1) << 40})),
               Catch::Contains("[actlens.io.205]"));
    // Fuzzer finding: a 0 extent empties the tensor, but the strides of the others were still formed
    // (signed overflow in tensor_view). Every zero's position is refused the same way.
    for (const std::vector<std::uint64_t>& ne : {std::vector<std::uint64_t>{0, uint64_t(1) << 40, uint64_t(1) << 40},
                                                std::vector<std::uint64_t>{uint64_t(1) << 40, uint64_t(1) << 40, 0},
                                                std::vector<std::uint64_t>{uint64_t(1) << 31, 0, uint64_t(1) << 33}})
        CHECK_THAT(err("zero_extent.gguf", two_tensors(32, 0, ne)),
                   Catch::Contains("[actlens.io.205]") && Catch::Contains("'b'") &&
                       Catch::Contains("(a 0 counted as 1)"));
    // Empty tensors whose other extents are addressable still open, as views of nothing.
    const io::gguf_file empty(write_bytes("empty_tensor.gguf", two_tensors(32, 0, {0, 1u << 20, 1u << 20}).b));
    CHECK(empty.tensor_info("b").elements == 0);
    CHECK(empty.mapped_view("b").shape() == shape_t{1u << 20, 1u << 20, 0});
    CHECK_THAT(err("negative_ne.gguf", two_tensors(32, 0, {uint64_t(1) << 63})),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("ne[0]"));
    CHECK_THAT(err("rank5.gguf", two_tensors(32, 0, {1, 1, 1, 1, 2})),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("n_dims = 5"));
    raw_gguf dup;
    dup.header(2, 0).tensor("t", {2}, 0, 0).tensor("t", {2}, 0, 32).pad().zeros(64);
    CHECK_THAT(err("dup_tensor.gguf", dup), Catch::Contains("[actlens.io.204]") && Catch::Contains("'t' appears twice"));

    // A type that parses but does not convert: Q4_1 (20-byte blocks of 32).
    const io::gguf_file q4(write_bytes("q4_1.gguf", two_tensors(32, 3, {32}).b));
    CHECK(q4.tensor_info("b").bytes == 20);
    CHECK_THAT(error_of([&] { (void)q4.to_float("b"); }),
               Catch::Contains("[actlens.io.206]") && Catch::Contains("Q4_1") && Catch::Contains("'b'"));
    CHECK_THAT(error_of([&] { (void)q4.to_float("nope"); }), Catch::Contains("[actlens.arg.101]") && Catch::Contains("'nope'"));
}

TEST_CASE("gguf: llama GGUFs from gguf-py reproduce the llama2.c model's logits", "[gguf][model]") {
    const transformer reference = load_model(llama2c_model);
    const tensor<float> want = reference.forward(prompt);

    // Packed at load (16-bit panels); load_model's default multiplies the rows in place (checked below).
    io::gguf_load_options packed_options;
    packed_options.weights = io::gguf_weights::packed;
    const transformer f16 = io::load_gguf(gguf_fixtures + "/stories260K_f16.gguf", packed_options);
    const model_config& c = f16.config();
    CHECK(c.family == "llama");
    CHECK(c.n_layers == 5);
    CHECK(c.d_model == 64);
    CHECK(c.n_heads == 8);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.d_head == 8);
    CHECK(c.d_mlp == 172);
    CHECK(c.vocab_size == 512);
    CHECK(c.max_seq_len == 512);
    CHECK(c.norm_eps == Approx(1e-5).epsilon(1e-6));
    CHECK(c.rope_theta == 10000.0);
    CHECK(c.rope == kernels::rope_style::adjacent);
    CHECK(c.tied_embeddings);
    // Tied and F16: the unembedding is the embedding's own f16 values, multiplied as f16 panels (the
    // token embedding the forward reads rows of is an f32 copy); the projections stay f16 too.
    CHECK(f16.weights().unembedding.is_narrow());
    CHECK(f16.weights().unembedding.raw() != f16.weights().token_embedding.data());
    CHECK(f16.packed().unembedding.element_type() == dtype::f16);
    CHECK(f16.weights().layers[0].w_q.type() == dtype::f16);
    CHECK(f16.packed().layers[4].w_out.element_type() == dtype::f16);

    // The same weights rounded to f16 here (the file's norms are F32): the logits agree bit for bit,
    // which proves the layout (ne order, q/k row order, gate/up/down) is what llama.cpp writes. Exact,
    // not merely close: f16 panels are widened to f32 without rounding and multiplied in the chains of
    // the f32 panels of the reference (kernels/packed_weight.hpp).
    const transformer f16_reference = with_rounded_weights(reference, round_f16);
    const double f16_diff = max_abs_diff(f16.forward(prompt), f16_reference.forward(prompt));
    CHECK(f16_diff == 0.0);
    CHECK_FALSE(f16.weights().layers[0].w_q.is_widened()); // no f32 copy was needed
    const double f16_vs_f32 = max_abs_diff(f16.forward(prompt), want);
    CHECK(f16_vs_f32 < 0.02); // measured 0.0113

    const transformer q8 = io::load_gguf(gguf_fixtures + "/stories260K_q8_0.gguf", packed_options);
    const io::gguf_file q8_file(gguf_fixtures + "/stories260K_q8_0.gguf");
    CHECK(q8_file.tensor_info("blk.0.attn_q.weight").type == io::ggml_type::q8_0);
    CHECK(q8_file.tensor_info("blk.0.ffn_down.weight").type == io::ggml_type::f16);
    const transformer q8_reference = with_rounded_weights(reference, round_q8_0);
    const double q8_diff = max_abs_diff(q8.forward(prompt), q8_reference.forward(prompt));
    CHECK(q8_diff <= 1e-5);
    const double q8_vs_f32 = max_abs_diff(q8.forward(prompt), want);
    CHECK(q8_vs_f32 < 0.3); // measured 0.253 with max |logit| 20.5
    double logit_range = 0;
    for (std::size_t i = 0; i < want.size(); ++i) logit_range = std::max(logit_range, double(std::abs(want.data()[i])));
    CHECK(logit_range > 10.0); // 20.5: the tolerances above are small against it

    // The default load multiplies the file's rows in place (kernels/gemm_rows.hpp): the same weights
    // summed in another order (tests/test_io_gguf_rows.cpp has the exact comparisons).
    const transformer f16_mapped = load_model(gguf_fixtures + "/stories260K_f16.gguf");
    const transformer q8_mapped = load_model(gguf_fixtures + "/stories260K_q8_0.gguf");
    CHECK(f16_mapped.packed().layers[0].w_q.is_mapped());
    CHECK(q8_mapped.packed().layers[0].w_q.format() == kernels::weight_format::q8_0);
    CHECK(max_abs_diff(f16_mapped.forward(prompt), f16_reference.forward(prompt)) <= 1e-5 * logit_range);
    CHECK(max_abs_diff(q8_mapped.forward(prompt), q8_reference.forward(prompt)) <= 1e-5 * logit_range);

    // Greedy next tokens agree with the f32 model at every position.
    const tensor<float> got = q8.forward(prompt);
    const std::size_t V = c.vocab_size;
    for (std::size_t t = 0; t < prompt.size(); ++t) {
        const float* a = got.data() + t * V;
        const float* b = want.data() + t * V;
        CHECK(std::max_element(a, a + V) - a == std::max_element(b, b + V) - b);
    }

    // The embedded vocabulary is readable metadata.
    const io::gguf_file vf(gguf_fixtures + "/stories260K_f16.gguf");
    CHECK(vf.get_string("tokenizer.ggml.model") == "llama");
    const std::vector<std::string> tokens = vf.value("tokenizer.ggml.tokens").to_strings();
    REQUIRE(tokens.size() == 512);
    CHECK(tokens[1] == "<s>");
    CHECK(tokens[259] == "\xe2\x96\x81t"); // sentencepiece's U+2581 for the space
    CHECK(tokens[3] == "<0x00>");
    const std::vector<std::int64_t> types = vf.value("tokenizer.ggml.token_type").to_ints();
    REQUIRE(types.size() == 512);
    CHECK(types[0] == 2);
    CHECK(types[1] == 3);
    CHECK(types[3] == 6);
    CHECK(vf.value("tokenizer.ggml.scores").size() == 512);
}

TEST_CASE("gguf: BF16 projections packed at load are bf16 panels with the logits of the bf16-rounded weights", "[gguf][model]") {
    const transformer reference = load_model(llama2c_model);
    const std::string path = (temp_folder("actlens_test_gguf") / "stories_bf16.gguf").string();
    io::save_gguf(reference, path, io::ggml_type::bf16);
    io::gguf_load_options packed_options;
    packed_options.weights = io::gguf_weights::packed;
    const transformer bf16 = io::load_gguf(path, packed_options);
    CHECK(bf16.packed().layers[1].w_gate.element_type() == dtype::bf16);
    CHECK(bf16.packed().unembedding.element_type() == dtype::bf16);
    const transformer rounded = with_rounded_weights(reference, [](float* p, std::size_t rows, std::size_t cols) {
        for (std::size_t i = 0; i < rows * cols; ++i) p[i] = bf16_to_f32(f32_to_bf16(p[i]));
    });
    CHECK(max_abs_diff(bf16.forward(prompt), rounded.forward(prompt)) == 0.0); // exact: see the F16 test
}

TEST_CASE("gguf: actlens's writer makes an F32 llama GGUF that loads in place with identical logits",
          "[gguf][model]") {
    const transformer m = load_model(llama2c_model);
    const model_config& c = m.config();
    const model_weights<float>& w = m.weights();
    auto write = [&](const std::string& name, const std::string& arch, const std::string& skip,
                     const std::string& extra, std::size_t d_mlp = 0) {
        io::gguf_writer g;
        g.set("general.architecture", io::gguf_value::string(arch));
        g.set("llama.block_count", io::gguf_value::u32(std::uint32_t(c.n_layers)));
        g.set("llama.embedding_length", io::gguf_value::u32(std::uint32_t(c.d_model)));
        g.set("llama.feed_forward_length", io::gguf_value::u32(std::uint32_t(d_mlp ? d_mlp : c.d_mlp)));
        g.set("llama.attention.head_count", io::gguf_value::u32(std::uint32_t(c.n_heads)));
        g.set("llama.attention.head_count_kv", io::gguf_value::u32(std::uint32_t(c.n_kv_heads)));
        g.set("llama.attention.layer_norm_rms_epsilon", io::gguf_value::f32(1e-5f));
        g.set("llama.context_length", io::gguf_value::u32(std::uint32_t(c.max_seq_len)));
        auto add = [&](const std::string& n, const tensor_view<const float>& v) {
            if (n != skip) g.add_tensor(n, v);
        };
        add("token_embd.weight", w.token_embedding);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const std::string b = "blk." + std::to_string(l) + ".";
            const layer_weights<float>& lw = w.layers[l];
            add(b + "attn_norm.weight", lw.ln1_weight);
            add(b + "attn_q.weight", lw.w_q);
            add(b + "attn_k.weight", lw.w_k);
            add(b + "attn_v.weight", lw.w_v);
            add(b + "attn_output.weight", lw.w_o);
            add(b + "ffn_norm.weight", lw.ln2_weight);
            add(b + "ffn_gate.weight", lw.w_gate);
            add(b + "ffn_up.weight", lw.w_in);
            add(b + "ffn_down.weight", lw.w_out);
        }
        add("output_norm.weight", w.final_norm_weight);
        if (!extra.empty()) g.add_tensor(extra, w.final_norm_weight);
        const std::string path = (temp_folder("actlens_test_gguf") / name).string();
        g.write(path);
        return path;
    };
    const transformer g = load_model(write("stories_f32.gguf", "llama", "", ""));
    CHECK(g.weights().layers[2].w_q.data() != w.layers[2].w_q.data()); // from the GGUF mapping
    const tensor<float> a = g.forward(prompt), b = m.forward(prompt);
    CHECK(max_abs_diff(a, b) == 0.0);

    CHECK_THAT(error_of([&] { load_model(write("gpt2.gguf", "gpt2", "", "")); }),
               Catch::Contains("[actlens.io.206]") && Catch::Contains("'gpt2'"));
    CHECK_THAT(error_of([&] { load_model(write("missing.gguf", "llama", "blk.3.ffn_up.weight", "")); }),
               Catch::Contains("[actlens.model.401]") && Catch::Contains("blk.3.ffn_up.weight"));
    CHECK_THAT(error_of([&] { load_model(write("extra.gguf", "llama", "", "blk.9.attn_norm.weight")); }),
               Catch::Contains("[actlens.io.206]") && Catch::Contains("blk.9.attn_norm.weight"));
    CHECK_THAT(error_of([&] { load_model(write("ffn.gguf", "llama", "", "", 100)); }),
               Catch::Contains("[actlens.model.401]") && Catch::Contains("'blk.0.ffn_gate.weight' has ne [64, 172]") &&
                   Catch::Contains("imply [64, 100]"));
    // rope_freqs.weight holds one RoPE divisor per frequency pair (d_head / 2 = 4 here), not d = 64.
    CHECK_THAT(error_of([&] { load_model(write("rope.gguf", "llama", "", "rope_freqs.weight")); }),
               Catch::Contains("[actlens.model.401]") && Catch::Contains("'rope_freqs.weight' has ne [64]") &&
                   Catch::Contains("expected [4]"));
}

TEST_CASE("control vectors: llama.cpp files read into actlens block indexing, and back", "[gguf][control_vector]") {
    // Written by gguf-py as llama.cpp's cvector-generator does: direction.N = (64 N + i) / 256 - 1.
    const control_vector cv = load_control_vector(gguf_fixtures + "/control_vector.gguf");
    CHECK(cv.model_hint == "llama");
    CHECK(cv.d_model() == 64);
    REQUIRE(cv.directions.size() == 4);
    for (std::size_t n = 1; n <= 4; ++n) {
        REQUIRE(cv.directions.count(n));
        const std::vector<float>& v = cv.directions.at(n);
        for (std::size_t i = 0; i < 64; ++i) CHECK(v[i] == float((64.0 * double(n) + double(i)) / 256.0 - 1.0));
    }

    // actlens -> file -> actlens, with a gap (block 3 absent) and an all-zero block 0 that is dropped.
    control_vector mine;
    mine.model_hint = "llama";
    for (std::size_t l : {1, 2, 4}) {
        std::vector<float> v(64);
        for (std::size_t i = 0; i < 64; ++i) v[i] = 0.5f * float(l) - float(i) / 128.0f;
        mine.directions[l] = v;
    }
    mine.directions[0] = std::vector<float>(64, 0.0f);
    // Kept for tests/fixtures/gguf/check_control_vector.py, which reads it with gguf-py.
    const std::string path = (temp_folder("actlens_test_gguf") / "actlens_control_vector.gguf").string();
    save_control_vector(path, mine);
    const io::gguf_file raw(path);
    CHECK(raw.get_string("general.architecture") == "controlvector");
    CHECK(raw.value("controlvector.layer_count").type() == io::gguf_type::i32);
    CHECK(raw.get_uint("controlvector.layer_count") == 3);
    REQUIRE(raw.tensors().size() == 3);
    CHECK(raw.tensors()[0].name == "direction.1");
    CHECK(raw.tensors()[2].name == "direction.4");
    const control_vector back = load_control_vector(path);
    mine.directions.erase(0);
    CHECK(back.directions == mine.directions);

    control_vector zero_block;
    zero_block.directions[0] = std::vector<float>(64, 0.5f);
    zero_block.directions[1] = std::vector<float>(64, 0.5f);
    CHECK_THAT(error_of([&] { save_control_vector(path + ".0", zero_block); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("block 0"));
    control_vector ragged;
    ragged.directions[1] = std::vector<float>(64, 0.5f);
    ragged.directions[2] = std::vector<float>(63, 0.5f);
    CHECK_THAT(error_of([&] { save_control_vector(path + ".r", ragged); }), Catch::Contains("[actlens.arg.102]"));
    control_vector nan;
    nan.directions[1] = std::vector<float>(64, std::nanf(""));
    CHECK_THAT(error_of([&] { save_control_vector(path + ".n", nan); }), Catch::Contains("[actlens.arg.104]"));
    CHECK_THAT(error_of([&] { save_control_vector(path + ".e", control_vector{}); }), Catch::Contains("no direction"));

    // Files llama.cpp would reject are rejected, naming the tensor.
    auto cv_file = [&](const std::string& name, const std::string& tensor_name, io::ggml_type type,
                       std::vector<std::size_t> shape) {
        io::gguf_writer w;
        tensor<float> v(shape.size() == 1 ? shape_t{shape[0]} : shape_t{shape[0], shape[1]});
        w.add_tensor(tensor_name, v.view(), type);
        const std::string p = (temp_folder("actlens_test_gguf") / name).string();
        w.write(p);
        return error_of([&] { load_control_vector(p); });
    };
    CHECK_THAT(cv_file("cv0.gguf", "direction.0", io::ggml_type::f32, {64}),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("direction.0"));
    CHECK_THAT(cv_file("cvname.gguf", "steer.1", io::ggml_type::f32, {64}), Catch::Contains("'steer.1'"));
    CHECK_THAT(cv_file("cvsign.gguf", "direction.-1", io::ggml_type::f32, {64}), Catch::Contains("'direction.-1'"));
    CHECK_THAT(cv_file("cvf16.gguf", "direction.1", io::ggml_type::f16, {64}),
               Catch::Contains("'direction.1'") && Catch::Contains("F16"));
    CHECK_THAT(cv_file("cv2d.gguf", "direction.1", io::ggml_type::f32, {2, 64}), Catch::Contains("1-D"));
    CHECK_THAT(error_of([&] { load_control_vector(gguf_fixtures + "/stories260K_q8_0.gguf"); }),
               Catch::Contains("'llama', not 'controlvector'"));
}

TEST_CASE("control vectors: hooks add strength * direction at blocks.l.hook_resid_post", "[gguf][control_vector]") {
    const transformer m = load_model(llama2c_model);
    const control_vector cv = load_control_vector(gguf_fixtures + "/control_vector.gguf");
    const float strength = -0.75f;
    // The same addition done by hand one step later: resid_pre of block l + 1 is resid_post of l.
    // direction.4 is at the last block (5 layers), whose resid_post has no following resid_pre:
    // restrict the range to blocks 1..3.
    hook_set<float> steered, by_hand;
    add_control_vector_hooks(steered, cv, strength, 1, 3);
    for (std::size_t l = 1; l <= 3; ++l) {
        const std::vector<float> v = cv.directions.at(l);
        by_hand.add("blocks." + std::to_string(l + 1) + ".hook_resid_pre",
                    [v, strength](tensor_view<float> x, const hook_context& c) {
                        for (std::size_t t = 0; t < c.positions; ++t)
                            for (std::size_t i = 0; i < v.size(); ++i) x(0, t, i) += strength * v[i];
                    });
    }
    run_options<float> a, b;
    a.hooks = &steered;
    b.hooks = &by_hand;
    const tensor<float> plain = m.forward(prompt), s = m.forward(prompt, a), h = m.forward(prompt, b);
    CHECK(max_abs_diff(s, h) <= 1e-6);
    CHECK(max_abs_diff(s, plain) > 0.1);
    CHECK_THAT(error_of([&] { add_control_vector_hooks(steered, cv, std::nanf("")); }), Catch::Contains("[actlens.arg.104]"));
    control_vector narrow;
    narrow.directions[1] = std::vector<float>(32, 1.0f);
    hook_set<float> wrong;
    add_control_vector_hooks(wrong, narrow);
    run_options<float> o;
    o.hooks = &wrong;
    CHECK_THAT(error_of([&] { (void)m.forward(prompt, o); }), Catch::Contains("[actlens.arg.102]"));
}

TEST_CASE("gguf: the embedded llama vocabulary encodes as llama2.c's tokenizer.bin does", "[gguf][tokenizer]") {
    // The fixture's vocabulary is tok512.bin in sentencepiece form ("\u2581" for spaces, "<s>").
    const tokenizer from_gguf = load_tokenizer(gguf_fixtures + "/stories260K_q8_0.gguf", 512);
    const llama2c_tokenizer reference = llama2c_tokenizer::load(actlens::test_paths::model("tok512.bin"), 512);
    REQUIRE(from_gguf.as_llama2c());
    CHECK(from_gguf.vocab_size() == 512);
    CHECK(from_gguf.as_llama2c()->piece(259) == " t");
    for (const char* text : {"Once upon a time, there was a little girl named Lily.", "  two  spaces\n\nand lines",
                             "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 bytes", "<s> is text here", ""}) {
        INFO(text);
        const std::vector<std::int32_t> ids = from_gguf.encode(text, true);
        CHECK(ids == reference.encode(text, true));
        const std::vector<std::int32_t> body(ids.begin() + 1, ids.end());
        CHECK(from_gguf.decode(body) == reference.decode(body));
    }
    CHECK_THAT(error_of([] { load_tokenizer(gguf_fixtures + "/stories260K_q8_0.gguf", 500); }),
               Catch::Contains("512 tokens, the model 500"));
    CHECK_THAT(error_of([] { load_gguf_tokenizer(gguf_fixtures + "/control_vector.gguf"); }),
               Catch::Contains("[actlens.io.206]") && Catch::Contains("tokenizer.ggml.model"));
}
