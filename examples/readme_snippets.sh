#!/bin/sh
# Compiles and runs the C++ block of README.md marked <!-- readme-snippet: methods --> (section
# "Methods in a few lines") in BUILD_DIR/readme_snippets, so that the README's code stays true.
#   readme_snippets.sh SOURCE_DIR BUILD_DIR [CXX]
set -eu
src=$1
out=$2/readme_snippets
cxx=${3:-c++}
mkdir -p "$out"
awk '/<!-- readme-snippet: methods -->/ { marked = 1; next }
     marked && /^```cpp/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' "$src/README.md" > "$out/methods.cpp"
test -s "$out/methods.cpp" || { echo "readme_snippets: no marked cpp block in $src/README.md" >&2; exit 1; }
"$cxx" -std=c++17 -O1 -fopenmp -I"$src/include" -isystem /usr/include/eigen3 "$out/methods.cpp" \
    -o "$out/methods" -lfmt -lpcre2-8
# The program's paths are relative to the repository's root; its outputs stay in $out.
ln -sfn "$src/examples" "$out/examples"
cd "$out"
./methods > methods.txt
cat methods.txt
test -s patching.html && test -s tim.gguf
