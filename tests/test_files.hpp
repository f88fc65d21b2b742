// tests/test_files.hpp: the files tests write and read back: whole-file reads and writes, edits of a
// fixture's copy, and the folders they go in.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include <unistd.h>

/// The whole file as bytes ("" when it cannot be opened).
inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Writes `bytes` as the whole file; the write must succeed.
inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

/// Replaces the first occurrence of `from` in the file by `to`; `from` must occur.
inline void replace_in_file(const std::filesystem::path& path, const std::string& from, const std::string& to) {
    std::string text = read_file(path);
    const std::size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    write_file(path, text);
}

/// `name` under the system's temporary folder, created if missing. It outlives the test (a rerun
/// overwrites what it wrote there); use scratch_folder for a folder that is removed.
inline std::filesystem::path temp_folder(const std::string& name) {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(dir);
    return dir;
}

/// A folder of its own (named by the tag, the process id and a count of the folders made so far, so
/// that tests running at the same time never share one), removed with its contents when the object
/// goes out of scope.
class scratch_folder {
public:
    explicit scratch_folder(const std::string& tag) {
        static std::atomic<unsigned> made{0};
        path = std::filesystem::temp_directory_path() /
               ("actlens_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(made++));
        std::filesystem::create_directories(path);
    }
    scratch_folder(const scratch_folder&) = delete;
    scratch_folder& operator=(const scratch_folder&) = delete;
    ~scratch_folder() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }

    /// The path of `name` in the folder.
    std::string file(const std::string& name) const { return (path / name).string(); }
    /// Writes `bytes` to `name` in the folder and returns its path.
    std::string write(const std::string& name, const std::string& bytes) const {
        write_file(path / name, bytes);
        return file(name);
    }

    std::filesystem::path path;
};
