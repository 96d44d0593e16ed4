//! Observers of a run's [`Outcome`](crate::reconcile::Outcome): they report what happened to the outside world
//! and decide nothing; they never change the plan or the exit code.

pub mod events;
pub mod progress;
