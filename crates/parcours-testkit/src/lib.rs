//! Test and benchmark kit for Parcours: a small HTTP client, the demo brand's data generator,
//! and generators of realistic Segment batches for load.

pub mod clock;
pub mod cluster;
pub mod demo;
pub mod http;
pub mod load;
