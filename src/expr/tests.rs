//! Unit tests of the expression engine; see the submodules.
