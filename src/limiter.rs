//! The shared rate limiter.
