// actlens/compiled.hpp: the opt-in compiled mode (README "Compile time").
//
// actlens is header-only: every program that runs a model instantiates the forward, the loaders and
// generation itself, and pays for compiling them in every file that uses them. A program that links the
// CMake target actlens::compiled gets ACTLENS_COMPILED defined instead; then the headers that define
// the heavy templates end with explicit instantiation declarations (`extern template`) of them, so the
// program's files call the copies compiled once into that library.
//
// Each such header writes its list once, as
//
//     #ifdef ACTLENS_EXTERN_TEMPLATE
//     ACTLENS_EXTERN_TEMPLATE class basic_transformer<float>;
//     #endif
//
// which this header turns into a declaration (`extern template`) in a program built with
// ACTLENS_COMPILED, and into the definition (`template`) in the library's one source,
// cmake/actlens_compiled.cpp, which defines ACTLENS_COMPILED_LIBRARY and includes the umbrella header.
// Without either macro the lists vanish and the headers work as before.
//
// `extern template` suppresses only the instantiation of functions that are not inline (C++17
// [temp.explicit]/10): a compiler that optimises still instantiates an inline function to consider
// inlining it. So the heavy bodies are defined outside their class (and free functions are not
// declared `inline`); the small members that stay in the class call them.
#pragma once

#if defined(ACTLENS_COMPILED_LIBRARY)
#define ACTLENS_EXTERN_TEMPLATE template
#elif defined(ACTLENS_COMPILED)
#define ACTLENS_EXTERN_TEMPLATE extern template
#endif
