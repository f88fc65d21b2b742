// actlens/core/deferred.hpp: a type spelled so that it depends on a template parameter.
//
// Inside a template, an expression whose types depend on no template parameter is checked where the
// template is defined, and every class template it names is instantiated there (Eigen's expression
// types, for one): in every file that includes the header, whether it calls the template or not.
// Written with deferred_t<T, Anchor>, Anchor being a parameter of the enclosing template, the same
// expression is checked, and its classes built, only where the template is instantiated, i.e. in the
// files that call it (README "Compile time").
#pragma once

namespace actlens::detail {

/// `type` is T. A class template, not `using deferred_t = T`, because only a member of a class
/// template specialised on Anchor is a dependent type.
template <class T, class Anchor>
struct deferred {
    using type = T;
};

/// T, as a type that depends on Anchor.
template <class T, class Anchor>
using deferred_t = typename deferred<T, Anchor>::type;

} // namespace actlens::detail
