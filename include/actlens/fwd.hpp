// actlens/fwd.hpp: forward declarations of the public types, for headers that only name them (in a
// signature, as a pointer or a reference) and so need not pay for the definitions: the umbrella
// header costs seconds of compile time, this one nothing (README "Compile time").
// tests/test_fwd.cpp includes this header before the umbrella, so a declaration that no longer
// matches its definition fails the build.
#pragma once

#include <cstdint>

namespace actlens {

// error.hpp
enum class errc : int;
class error;

// core/
enum class dtype;
struct shape_t;
template <class T>
class tensor_view;
template <class T>
class tensor;
class rng;

// model/
struct model_config;
enum class site : std::uint8_t;
struct hook_point;
struct hook_context;
template <class T>
class hook_set;
template <class T>
class activation_cache;
template <class T>
struct run_options;
template <class T>
struct workspace;
template <class T>
class kv_cache;
template <class T>
class basic_transformer;
/// The float model every loader returns (model/transformer.hpp).
using transformer = basic_transformer<float>;
template <class T>
struct generate_options;
struct sampling_options;
class sampler;

// tokenizer/
class tokenizer;
class llama2c_tokenizer;
class bpe_tokenizer;

// io/
namespace io {
class gguf_file;
class gguf_writer;
struct gguf_save_options;
class safetensors_file;
} // namespace io

// analysis/
struct correlation_result;
struct bootstrap_result;

// methods/
struct capture_options;
struct captured_activations;
class capture_reader;
struct patching_options;
struct patching_result;
struct attribution_options;
struct atp_star_options;
struct atp_star_result;
template <class T>
struct steering_vector;
struct steering_options;
struct control_vector;
struct kmeans_result;
template <class T>
struct gact_steerer;
struct snmf_options;
struct snmf_result;
class memory_rows;

} // namespace actlens
