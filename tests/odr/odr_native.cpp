// tests/odr/odr_native.cpp: the ODR test's translation unit built with -march=native.
#include "odr_model.hpp"

odr::results odr_native() { return odr::compute(); }
