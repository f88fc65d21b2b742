// actlens/methods/detail/symmetric_eigen.hpp: Eigen's symmetric eigensolver (SelfAdjointEigenSolver)
// and its LDLT / LLT, without the rest of <Eigen/Eigenvalues>.
//
// <Eigen/Eigenvalues> includes <Eigen/Geometry> (quaternions, transforms, their SIMD kernels), which the
// methods never use and which costs every file that includes the umbrella header ~50 MB of compiler
// memory and ~0.5 s at -O2 -march=native (README "Compile time"). SelfAdjointEigenSolver needs only
// Core, Jacobi, Householder and its own tridiagonalisation, so this header includes those modules and
// the solver's file, between Eigen's own warning guards as the module headers do. Eigen's include
// guards make a later <Eigen/Eigenvalues> in the same file harmless. An Eigen without that file
// layout gets the whole module.
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Core>

#if __has_include(<Eigen/src/Eigenvalues/SelfAdjointEigenSolver.h>) && !defined(EIGEN_USE_LAPACKE)
#include <Eigen/Householder>
#include <Eigen/Jacobi>
// clang-format off
#include <Eigen/src/Core/util/DisableStupidWarnings.h>
#include <Eigen/src/Eigenvalues/SelfAdjointEigenSolver.h>
#include <Eigen/src/Core/util/ReenableStupidWarnings.h>
// clang-format on
#else
#include <Eigen/Eigenvalues>
#endif
