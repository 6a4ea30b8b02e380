//! The `verify` step (`type` `verify_restore`): the restore test (`restore_test.rs`, which
//! `drill` shares) on a schedule: the newest dump restored into a scratch database, checked,
//! dropped.

pub use super::restore_test::{
    SETTINGS, compile, decode, execute, preview, ready, sweep, validate,
};
