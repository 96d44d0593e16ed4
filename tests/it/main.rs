//! The one integration-test binary: every test drives the real `clbsync` binary or its library against the
//! CLB emulator and the test kube-apiserver on loopback.

mod architecture;
mod ci_recipes;
mod clb_client;
mod cli;
mod docs;
mod e2e;
mod emulator;
mod install;
mod kube;
mod kube_requests;
mod monitoring;
mod packaging;
mod policies;
mod rbac;
mod rollout;
mod rules;
mod rules_fuzz;
mod security;
mod support;
mod task_polling;
mod testbed;
