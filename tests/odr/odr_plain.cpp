// tests/odr/odr_plain.cpp: the ODR test's translation unit built without -m flags.
#include "odr_model.hpp"

odr::results odr_plain() { return odr::compute(); }
