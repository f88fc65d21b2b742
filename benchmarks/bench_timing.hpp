// benchmarks/bench_timing.hpp: what the *_vs_torch benchmarks share: wall-clock (and process CPU)
// samples of a callable, their median, command-line option values and comma-separated lists, and the
//   RESULT <what> threads=N T=N runs=N min_ms=... median_ms=... samples_ms=t1,t2,... [cpu_ms=...] [extra]
// line that the run_*_vs_torch.sh runners parse (the PyTorch halves print the same format).
#pragma once

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

namespace bench {

using clock_type = std::chrono::steady_clock;

inline double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

/// The value that follows option argv[i] (i moves onto it); a missing value ends the program with
/// status 2 and a message naming the option.
inline std::string option_value(int argc, char** argv, int& i) {
    if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", argv[i]);
        std::exit(2);
    }
    return argv[++i];
}

/// "a,b,,c" -> {"a", "b", "c"} (empty items are skipped).
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const std::size_t comma = s.find(',', start);
        const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!item.empty()) out.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

/// "64,256" -> {64, 256}.
inline std::vector<std::size_t> parse_sizes(const std::string& s) {
    std::vector<std::size_t> out;
    for (const std::string& item : split_list(s)) out.push_back(std::stoul(item));
    return out;
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// CPU time of the whole process (all threads): on a loaded machine wall time measures the load as
// much as the code, CPU time much less so.
inline double process_cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) * 1e3 + double(t.tv_nsec) * 1e-6;
}

/// Wall-clock samples of `runs` calls after `warmup` untimed ones; the CPU time of every sample
/// goes to `cpu` (when given).
template <class F>
std::vector<double> time_ms(int warmup, int runs, F&& fn, std::vector<double>* cpu = nullptr) {
    for (int i = 0; i < warmup; ++i) fn();
    std::vector<double> samples;
    for (int i = 0; i < runs; ++i) {
        const double c0 = cpu ? process_cpu_ms() : 0.0;
        const auto t0 = clock_type::now();
        fn();
        samples.push_back(ms_since(t0));
        if (cpu) cpu->push_back(process_cpu_ms() - c0);
    }
    return samples;
}

/// One RESULT line (see the top of this file); `s` must not be empty.
inline void print_result(const std::string& what, int threads, std::size_t T, const std::vector<double>& s,
                         const std::string& extra = "", const std::vector<double>& cpu = {}) {
    std::string list, cpu_list;
    for (double v : s) list += fmt::format("{}{:.3f}", list.empty() ? "" : ",", v);
    for (double v : cpu) cpu_list += fmt::format("{}{:.3f}", cpu_list.empty() ? "" : ",", v);
    fmt::print("RESULT {} threads={} T={} runs={} min_ms={:.3f} median_ms={:.3f} samples_ms={}{}{}{}{}\n", what,
               threads, T, s.size(), *std::min_element(s.begin(), s.end()), median(s), list,
               cpu.empty() ? "" : " cpu_ms=", cpu_list, extra.empty() ? "" : " ", extra);
    std::fflush(stdout);
}

} // namespace bench
