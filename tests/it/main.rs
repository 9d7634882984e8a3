//! Integration tests: the real router and engine on real SQLite files.

mod common;
mod engine;
mod payments;
mod recovery;
mod webhook;
