//! Test kit for Parcours: a manual clock, a multi-node harness, and (re-exported from
//! `parcours-demo`) the HTTP client, the demo brand and the load generator that tests use.
//! Only tests link it.

pub mod clock;
pub mod cluster;

pub use parcours_demo::brand as demo;
pub use parcours_demo::{http, load};
