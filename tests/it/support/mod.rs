//! Shared test environment.

pub mod kube;
