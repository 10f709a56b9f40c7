//! The `parcours` binary's building blocks: configuration, the node (store + engine + HTTP),
//! and the commands. `main.rs` only parses the command line.

pub mod bench;
pub mod bench_audiences;
pub mod bench_commerce;
pub mod bench_console;
pub mod bench_journey_timers;
pub mod bench_journeys;
pub mod bench_measure;
pub mod bench_timers;
pub mod commands;
pub mod config;
pub mod journeys;
pub mod node;
pub mod report;
pub mod secrets;
