// The one source of the static library actlens::compiled (README "Compile time"). With
// ACTLENS_COMPILED_LIBRARY, every `ACTLENS_EXTERN_TEMPLATE ...;` line at the end of a header becomes an
// explicit instantiation definition (actlens/compiled.hpp), so including the umbrella header compiles
// each listed template here, once; the programs that link the library see the same lines as
// `extern template` declarations and call these copies.
//
// It lives under cmake/ because it holds no code of its own: what it instantiates is listed in the
// headers, next to the templates, so a header that gains a heavy template adds its line there.
#define ACTLENS_COMPILED_LIBRARY
#include <actlens/actlens.hpp>
