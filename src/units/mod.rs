//! Value types of the plan language, one concept per file.

pub mod duration;
pub mod keep;
pub mod schedule;
pub mod size;
