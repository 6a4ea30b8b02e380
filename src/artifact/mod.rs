//! Backup artifacts on disk: the layout's names, temporary files, checksums, parallel gzip.

pub mod base;
pub mod codec;
pub mod end;
pub mod gzip;
pub mod layout;
pub mod legacy;
pub mod manifest;
pub mod marker;
pub mod proof;
pub mod seal;
pub mod sha;
pub mod wal;
