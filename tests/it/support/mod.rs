//! Shared test environment.
