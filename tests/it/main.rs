//! Integration tests: the real router and engine on real SQLite files.

mod access;
mod batched_writes;
mod browser;
mod cli;
mod cli_operations;
mod cluster;
mod common;
mod cron;
mod db_faults;
mod engine;
mod event_api;
mod flow;
mod group_commit;
mod money;
mod operations;
mod outgoing_webhooks;
mod payments;
mod recovery;
mod reports;
mod sessions;
mod step_tools;
mod stripe_api;
mod subscriptions;
mod webhook;
