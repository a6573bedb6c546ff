//! Loader configuration.
