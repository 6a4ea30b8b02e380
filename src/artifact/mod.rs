//! Backup artifacts on disk: the layout's names, temporary files, checksums, parallel gzip.

pub mod gzip;
pub mod layout;
pub mod sha;
