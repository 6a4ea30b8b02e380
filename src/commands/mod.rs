//! One file per command: each reads the shared `App`, does its job, prints, returns a Failure.

pub mod activities;
pub mod alerts;
pub mod apply;
pub mod cluster;
pub mod copy;
pub mod doctor;
pub mod help;
pub mod init;
pub mod migrate;
pub mod restore;
pub mod show;
pub mod status;
pub mod validate;
pub mod wal;
