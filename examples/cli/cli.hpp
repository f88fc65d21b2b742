// The actlens command-line tool: what its subcommands share (argument parsing, loading, outputs).
//
// The tool is three translation units so that they compile side by side and each stays light:
// main.cpp (parsing, info, generate), sweeps.cpp (patch, attribute), features.cpp (steer, capture,
// snmf, neurons). Every error is an actlens::error; main() prints it on one line and exits with 2.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/tokenizer/load.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace actlens::cli {

/// An option of a subcommand: `--name VALUE`, or a flag when `value` is empty.
struct option_spec {
    std::string name, value, help;
};

/// A parsed command line: options by name, flags, and positional arguments.
class arguments {
public:
    std::string command;
    std::map<std::string, std::string> values;
    std::vector<std::string> flags;
    std::vector<std::string> positional;

    bool has(const std::string& name) const;
    /// The value of --name; throws arg.101 naming the option when it is missing.
    const std::string& required(const std::string& name) const;
    std::string text(const std::string& name, const std::string& fallback) const;
    double number(const std::string& name, double fallback) const;
    std::size_t count(const std::string& name, std::size_t fallback) const;
    int integer(const std::string& name, int fallback) const;
};

/// A subcommand: its options, help text and body.
struct command_spec {
    std::string name, usage, summary;
    std::vector<option_spec> options;
    std::function<int(const arguments&)> run;
};

/// Parses argv[2..] against `spec`; throws arg.101 for an unknown option or a missing value.
arguments parse(const command_spec& spec, int argc, char** argv);
void print_help(const command_spec& spec);

/// The model of --model (or `path`), and its tokenizer: --tokenizer, else the llama2.c tokenizer
/// file or tokenizer.json in the model's folder.
struct session {
    transformer model;
    tokenizer tok;
};
session open_session(const std::string& model_path, const arguments& args);

/// A token given as an id ("42") or as text that is one token (" Tim").
std::int32_t token_argument(const session& s, const std::string& option, const std::string& value);
/// The text of one token, for labels.
std::string piece(const session& s, std::int32_t id);
std::vector<std::string> pieces(const session& s, const std::vector<std::int32_t>& ids);
/// Non-empty lines of a text file; throws io.201 when it cannot be read.
std::vector<std::string> read_lines(const std::string& path);

/// A progress bar on stderr ("label [#####     ] 12/40"), redrawn in place, ended by finish().
class progress_bar {
public:
    explicit progress_bar(std::string label) : m_label(std::move(label)) {}
    void update(std::size_t done, std::size_t total);
    void finish();

private:
    std::string m_label;
    int m_drawn = -1;
};

/// Writes `text` to `path` (io.201 when it cannot).
void write_text(const std::string& path, const std::string& text);

int run_info(const arguments& args);
int run_generate(const arguments& args);
int run_patch(const arguments& args);
int run_attribute(const arguments& args);
int run_steer(const arguments& args);
int run_capture(const arguments& args);
int run_snmf(const arguments& args);
int run_neurons(const arguments& args);

} // namespace actlens::cli
