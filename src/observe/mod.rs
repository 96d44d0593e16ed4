//! Observers of a run's [`Outcome`](crate::reconcile::Outcome): they read what happened and never change the plan
//! or the exit code.

pub mod metrics;
