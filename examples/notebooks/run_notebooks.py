#!/usr/bin/python3
"""Runs the C++ notebooks of examples/notebooks in clang-repl and renders them to HTML.

    run_notebooks.py OUTPUT_DIR [NOTEBOOK.ipynb ...] [--clang-repl PATH] [--timeout SECONDS] [--no-html]
    run_notebooks.py OUTPUT_DIR --self-test

The notebooks are written for xeus-cling / xeus-cpp (kernel xcpp17). Neither is packaged for
Debian 12, but clang-repl (Debian clang-tools-19) is the incremental interpreter xeus-cpp is built
on, so this runner executes every code cell of a notebook, in order, in ONE clang-repl session:

  * `#pragma cling add_include_path("DIR")` becomes `-Xcc -IDIR` on clang-repl's command line (a
    relative DIR is taken from the notebook's folder, as xeus-cling does with its working folder);
    `#pragma cling load("NAME")` becomes `%lib PATH` at that cell (NAME is a path or a library name
    looked up like the dynamic linker would: libNAME.so in the system library folders).
  * clang-repl reads one line per input and its `\\` continuations break on comments, so each cell
    is written to a file and the session reads `#include "cell_NN.cpp"`: a cell may hold any number
    of lines, and compiler messages name the cell file and the line in the cell.
  * xeus-cling displays a cell's last expression when it has no `;`, through the ADL function
    `mime_bundle_repr(const T&)` (actlens/report/display.hpp). The runner wraps such an expression
    in a helper that prints the mime bundle as one JSON line, and writes it back as display_data
    (text/html and text/plain), or as text/plain through operator<< for other types.
  * After each cell the session prints a marker line on stdout and on stderr, so that every
    output is attributed to its cell.
  * Known clang-repl-19 trap: once a shared library has been loaded with %lib, the interpreter
    segfaults AT EXIT when any global with a destructor exists (its teardown, not the notebook's
    code). Every session therefore ends with `std::fflush(nullptr); std::_Exit(0);`, after the
    last marker; any non-zero exit code or missing marker before that is a crash and fails the run.

Two more clang-repl-19 traps the notebooks avoid (xeus-cling has neither): a global reference
(`const T& x = ...;`) read by another global's initializer in the same cell crashes the session, so
notebooks copy instead; and a displayed expression that builds temporaries can fail to link
("Symbols not found" for their destructors), so notebooks display named variables.

A notebook fails when a cell's stderr holds a compiler error, when the session crashes or times
out. The executed copy (outputs filled in) is written to OUTPUT_DIR/NAME.ipynb and rendered with
`jupyter nbconvert --to html` to OUTPUT_DIR/NAME.html; the committed notebooks stay without outputs.
Each rendered page is then opened in headless Chromium (when installed; else the check says
"skipped"): the DOM the browser parsed must hold every heatmap cell of the notebook's outputs with its
row, column and value, and the page's screenshot (OUTPUT_DIR/NAME.png) must not be blank.
The time each notebook took is printed. Exit code: 0 when all ran, 1 when one failed, 77 (CTest's
skip code) when clang-repl is not installed.
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

try:
    import nbformat  # Debian python3-nbformat
except ImportError:
    print("run_notebooks: skipped: the Python module nbformat is not installed (Debian: python3-nbformat)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
CELL_END = "@@actlens-notebook-cell-end {}@@"
DISPLAY = "@@actlens-notebook-display@@"
SKIP = 77
# A heatmap cell as actlens/report/svg.hpp writes it.
HEATMAP_CELL = re.compile(r'data-row="(\d+)" data-col="(\d+)" data-value="([^"]*)"')

PRAGMA = re.compile(r'^\s*#\s*pragma\s+cling\s+(add_include_path|load)\s*\(\s*"([^"]*)"\s*\)\s*$')
ERROR = re.compile(r"(^|\s)(fatal )?error:", re.MULTILINE)

# Defined before the first cell: shows a value the way xeus-cling would (mime_bundle_repr found by
# ADL, else operator<<), as one line the runner turns into display_data.
# xeus-cpp's kernel has nlohmann::json in scope (its messages are nlohmann documents), and the
# library's mime_bundle_repr returns that type through a defaulted template parameter: the runner
# includes it as the kernel does.
DISPLAY_HELPER = r"""
#include <nlohmann/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
namespace actlens_notebook_runner {
template <class T, class = void> struct has_bundle : std::false_type {};
template <class T>
struct has_bundle<T, std::void_t<decltype(mime_bundle_repr(std::declval<const T&>()))>> : std::true_type {};
template <class T, class = void> struct has_stream : std::false_type {};
template <class T>
struct has_stream<T, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const T&>())>>
    : std::true_type {};
inline std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
        else out += char(c);
    }
    return out + "\"";
}
template <class T>
void display(const T& value) {
    std::string bundle;
    if constexpr (has_bundle<T>::value) {
        bundle = mime_bundle_repr(value).dump();
    } else if constexpr (has_stream<T>::value) {
        std::ostringstream text;
        text << value;
        bundle = "{\"text/plain\": " + quoted(text.str()) + "}";
    } else {
        bundle = "{\"text/plain\": \"(a value without mime_bundle_repr or operator<<)\"}";
    }
    std::fflush(stdout);
    std::printf("\n%s%s\n", "@@actlens-notebook-display@@", bundle.c_str());
    std::fflush(stdout);
}
} // namespace actlens_notebook_runner
"""

LIBRARY_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def find_library(name, notebook_dir):
    """The file a `#pragma cling load` names: a path, or libNAME.so in the system folders."""
    if os.sep in name:
        path = name if os.path.isabs(name) else os.path.join(notebook_dir, name)
        if os.path.exists(path):
            return os.path.abspath(path)
        raise RuntimeError(f'#pragma cling load("{name}"): no file {path}')
    base = name if name.startswith("lib") else "lib" + name
    for folder in LIBRARY_DIRS:
        for candidate in (name, base, base + ".so"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path) and is_elf(path):
                return path
        # libNAME.so may be a linker script (libm.so, libc.so); the versioned file is the library.
        if not os.path.isdir(folder):
            continue
        versioned = sorted(f for f in os.listdir(folder) if f.startswith(base + ".so."))
        for candidate in versioned:
            path = os.path.join(folder, candidate)
            if os.path.isfile(path) and is_elf(path):
                return path
    raise RuntimeError(f'#pragma cling load("{name}"): no {base}.so in {", ".join(LIBRARY_DIRS)}')


def ends_statement(line):
    return line.endswith((";", "}", "{")) or line.startswith("#")


def wrap_display(lines):
    """Wraps the cell's trailing expression (its last lines, none ending a statement) for display."""
    significant = [i for i, l in enumerate(lines) if l.strip() and not l.strip().startswith("//")]
    if not significant or ends_statement(lines[significant[-1]].strip()):
        return lines
    end = significant[-1]
    start = end
    for i in reversed(significant[:-1]):
        if ends_statement(lines[i].strip()):
            break
        start = i
    out = list(lines)
    out[start] = "actlens_notebook_runner::display(" + out[start]
    out[end] = out[end] + ");"
    return out


def prepare(nb, notebook_dir, work_dir):
    """Writes the cell files; returns (include dirs, the session's input, indices of code cells)."""
    includes, session, code_cells = [], [], []
    with open(os.path.join(work_dir, "runner_prelude.hpp"), "w") as f:
        f.write(DISPLAY_HELPER)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        loads = []
        for i, line in enumerate(lines):
            m = PRAGMA.match(line)
            if not m:
                continue
            kind, value = m.groups()
            if kind == "add_include_path":
                includes.append(value if os.path.isabs(value) else os.path.normpath(os.path.join(notebook_dir, value)))
            else:
                loads.append(find_library(value, notebook_dir))
            lines[i] = ""  # keeps the line numbers of compiler messages those of the cell
        path = os.path.join(work_dir, f"cell_{len(code_cells):02d}.cpp")
        with open(path, "w") as f:
            f.write("\n".join(wrap_display(lines)) + "\n")
        session += [f"%lib {lib}" for lib in loads]
        session.append(f'#include "{path}"')
        if not code_cells:
            # After the first cell, so that its macros (e.g. FMT_HEADER_ONLY) precede every include.
            session.append(f'#include "{os.path.join(work_dir, "runner_prelude.hpp")}"')
        marker = CELL_END.format(len(code_cells))
        session.append(f'std::fflush(stdout); std::printf("\\n{marker}\\n"); std::fflush(stdout); '
                       f'std::fprintf(stderr, "\\n{marker}\\n");')
        code_cells.append(index)
    # The teardown trap (see the top of this file): leave without running destructors.
    session.append("std::fflush(nullptr); std::_Exit(0);")
    return includes, "\n".join(session) + "\n", code_cells


def split_by_marker(text, count):
    """The text printed by each of `count` cells; None for a cell whose marker never came."""
    parts, rest = [], text
    for i in range(count):
        marker = "\n" + CELL_END.format(i) + "\n"
        at = rest.find(marker)
        if at < 0:
            parts.append(None)
            continue
        parts.append(rest[:at])
        rest = rest[at + len(marker):]
    return parts, rest


def outputs_of(stdout, stderr):
    outputs, text = [], []

    def flush_text():
        joined = "\n".join(text).strip("\n")
        if joined:
            outputs.append(nbformat.v4.new_output("stream", name="stdout", text=joined + "\n"))
        text.clear()

    for line in (stdout or "").split("\n"):
        if line.startswith(DISPLAY):
            flush_text()
            outputs.append(nbformat.v4.new_output("display_data", data=json.loads(line[len(DISPLAY):])))
        else:
            text.append(line)
    flush_text()
    if stderr and stderr.strip():
        outputs.append(nbformat.v4.new_output("stream", name="stderr", text=stderr.strip("\n") + "\n"))
    return outputs


def run_notebook(path, out_dir, clang_repl, timeout, extra_flags, html, chromium=None):
    name = os.path.splitext(os.path.basename(path))[0]
    notebook_dir = os.path.dirname(os.path.abspath(path))
    work_dir = os.path.join(out_dir, name + "_cells")
    os.makedirs(work_dir, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    includes, session, code_cells = prepare(nb, notebook_dir, work_dir)
    with open(os.path.join(work_dir, "session.txt"), "w") as f:
        f.write(session)
    # libstdc++ 12 marks get_temporary_buffer (used by std::stable_sort) deprecated, which clang reports at
    # every use in a header: noise in every cell output, so it is silenced.
    command = [clang_repl, "-Xcc", "-std=c++17", "-Xcc", "-Wno-deprecated-declarations"]
    command += [a for d in includes for a in ("-Xcc", "-I" + d)]
    for flag in extra_flags:
        command += ["-Xcc", flag]
    start = time.monotonic()
    try:
        # The notebook's folder is the working folder, as under xeus-cling (relative model paths).
        done = subprocess.run(command, input=session, capture_output=True, text=True, timeout=timeout,
                              cwd=notebook_dir, errors="replace")
        stdout, stderr, code, timed_out = done.stdout, done.stderr, done.returncode, False
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")
        stdout, stderr, code, timed_out = text(e.stdout), text(e.stderr), None, True
    seconds = time.monotonic() - start

    out_parts, out_rest = split_by_marker(stdout, len(code_cells))
    err_parts, err_rest = split_by_marker(stderr, len(code_cells))
    problems = []
    for n, (index, out, err) in enumerate(zip(code_cells, out_parts, err_parts)):
        cell = nb.cells[index]
        cell.execution_count = n + 1
        if out is None:
            problems.append(f"cell {n + 1}: the session stopped before the cell's end (crash or timeout)")
            cell.outputs = outputs_of(None, err if err is not None else err_rest)
            break
        cell.outputs = outputs_of(out, err)
        if err and ERROR.search(err):
            problems.append(f"cell {n + 1}: error\n{err.strip()}")
    if timed_out:
        problems.append(f"timed out after {timeout} s")
    elif code != 0:
        problems.append(f"clang-repl exited with code {code} (crash before the final _Exit?)\n{err_rest.strip()}")
    elif ERROR.search(err_rest):
        problems.append(f"error after the last cell:\n{err_rest.strip()}")

    executed = os.path.join(out_dir, name + ".ipynb")
    nbformat.write(nb, executed)
    if html:
        subprocess.run(["jupyter-nbconvert", "--to", "html", "--log-level", "WARN", "--output-dir", out_dir, executed],
                       check=True)
        if chromium:
            problems += browser_problems(os.path.join(out_dir, name + ".html"), nb, chromium)
    return seconds, problems


def find_chromium():
    for name in [os.environ.get("ACTLENS_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def browser_problems(html_path, executed, chromium):
    """What headless Chromium made of a rendered notebook: the problems found (empty when none)."""
    wanted = collections.Counter()
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            wanted.update(HEATMAP_CELL.findall("".join(html) if isinstance(html, list) else html))
    browser = ["timeout", "60", chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    url = "file://" + os.path.abspath(html_path)
    dom = subprocess.run(browser + ["--dump-dom", url], capture_output=True, text=True, errors="replace")
    if dom.returncode != 0:
        return [f"chromium --dump-dom failed with exit code {dom.returncode}"]
    problems = []
    parsed = collections.Counter(HEATMAP_CELL.findall(dom.stdout))
    missing = wanted - parsed
    if missing:
        problems.append(f"{sum(missing.values())} of {sum(wanted.values())} heatmap cells are not in the browser's DOM, "
                        f"e.g. row/col/value {next(iter(missing))}")
    png = os.path.splitext(html_path)[0] + ".png"
    shot = subprocess.run(browser + ["--window-size=900,1200", "--screenshot=" + png, url], capture_output=True)
    if shot.returncode != 0 or not os.path.exists(png):
        return problems + [f"chromium --screenshot failed with exit code {shot.returncode}"]
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
    import png_colours  # tests/png_colours.py, shared with the report's browser test
    distinct = len(png_colours.colours(png))
    if distinct <= 50:  # a blank page has 1 colour; rendered code and text give hundreds
        problems.append(f"the screenshot {png} looks blank ({distinct} distinct colours)")
    return problems


def self_test(out_dir, clang_repl, timeout):
    """Checks the runner on three small notebooks: one that must pass (a library loaded with %lib and
    a global with a destructor: the teardown trap), one with a compiler error in its third cell,
    one that crashes in its third cell. Returns the number of failed checks."""
    def notebook(*cells):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        return nb

    cases = {
        "good": (notebook('#pragma cling load("libm")\n#include <cmath>\n#include <cstdio>\n#include <vector>',
                          'std::vector<int> kept_alive{1, 2, 3};\n'
                          'std::printf("sum %d\\n", kept_alive[0] + kept_alive[2]);',
                          'std::sqrt(2.25)'), None),
        "error": (notebook("#include <cstdio>", 'std::printf("ran\\n");', "int broken = not_declared;", "1"),
                  "cell 3: error"),
        "crash": (notebook("#include <cstdio>", 'std::printf("ran\\n");',
                           "int* nowhere = nullptr;\nint crash = *nowhere;"),
                  "cell 3: the session stopped"),
    }
    failed = 0
    os.makedirs(out_dir, exist_ok=True)
    for name, (nb, expected) in cases.items():
        path = os.path.join(out_dir, name + ".ipynb")
        nbformat.write(nb, path)
        _, problems = run_notebook(path, out_dir, clang_repl, timeout, [], False)
        executed = nbformat.read(os.path.join(out_dir, name + ".ipynb"), as_version=4)
        if expected is None:
            outputs = [o for c in executed.cells for o in c.outputs]
            ok = (not problems and any("sum 4" in o.get("text", "") for o in outputs)
                  and any(o.get("data", {}).get("text/plain") == "1.5" for o in outputs))
        else:
            ok = any(p.startswith(expected) for p in problems) and \
                 any("ran" in o.get("text", "") for o in executed.cells[1].outputs)
        print(f"self-test {name}: {'ok' if ok else 'FAILED'}" + (f" ({'; '.join(problems)})" if not ok else ""))
        failed += not ok
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output_dir")
    parser.add_argument("notebooks", nargs="*", help="default: every .ipynb next to this script")
    parser.add_argument("--clang-repl", default=os.environ.get("CLANG_REPL", "clang-repl-19"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    parser.add_argument("--flag", action="append", default=[], help="an extra compiler flag, e.g. --flag=-O1")
    parser.add_argument("--no-html", action="store_true", help="skip the nbconvert and browser steps")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless Chromium check")
    parser.add_argument("--self-test", action="store_true",
                        help="check that the runner passes a good notebook and fails on an error and a crash")
    args = parser.parse_args()

    clang_repl = shutil.which(args.clang_repl)
    if clang_repl is None:
        print(f"run_notebooks: skipped: {args.clang_repl} is not installed (Debian: clang-tools-19)")
        return SKIP
    if args.self_test:
        return 1 if self_test(os.path.abspath(args.output_dir), clang_repl, args.timeout) else 0
    notebooks = args.notebooks or sorted(
        os.path.join(HERE, f) for f in os.listdir(HERE) if f.endswith(".ipynb"))
    os.makedirs(args.output_dir, exist_ok=True)
    chromium = None if args.no_html or args.no_browser else find_chromium()
    if not args.no_html and not args.no_browser and chromium is None:
        print("run_notebooks: browser check skipped: chromium not found (set ACTLENS_CHROMIUM or install Debian's "
              "chromium)")
    failed = 0
    total = 0.0
    for path in notebooks:
        seconds, problems = run_notebook(path, os.path.abspath(args.output_dir), clang_repl, args.timeout, args.flag,
                                         not args.no_html, chromium)
        total += seconds
        status = "ok" if not problems else "FAILED"
        print(f"{os.path.basename(path)}: {status} in {seconds:.1f} s", flush=True)
        for p in problems:
            print("  " + p.replace("\n", "\n  "), flush=True)
        failed += bool(problems)
    print(f"{len(notebooks) - failed} of {len(notebooks)} notebooks ran in {total:.1f} s; outputs in "
          f"{os.path.abspath(args.output_dir)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
