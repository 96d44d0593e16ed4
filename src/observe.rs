//! Observers of a run: they tell the outside world what happened (metrics and Events, from the
//! [`Outcome`](crate::outcome::Outcome)) or is happening (progress) and decide nothing; they never change the
//! plan or the exit code.

pub mod events;
pub mod export;
pub mod logs;
pub mod metrics;
pub mod pass;
pub mod progress;
