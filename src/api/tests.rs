//! Unit tests of the API types.
