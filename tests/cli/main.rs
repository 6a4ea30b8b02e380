//! End-to-end tests: each builds a temporary plans folder and state, runs the real binary,
//! and checks what a user would see.

mod harness;
mod receiver;

mod actions;
mod alerts;
mod apply;
mod chain;
mod check;
mod copy;
mod copy_trust;
mod credentials;
mod drill;
mod dump;
mod email;
mod encrypt;
mod engines;
mod first_week;
mod fleet;
mod git_tag;
mod hostile_values;
mod init;
mod installed;
mod invalid_plans;
mod layers;
mod migrate;
mod on_failure;
mod ownership;
mod package;
mod pitr;
mod report;
mod restore;
mod restore_safety;
mod rows;
mod runbook;
mod runner;
mod s3;
mod serve;
mod shipped;
mod show;
mod snapshot;
mod two_dumps;
mod verify;
mod zstd;
