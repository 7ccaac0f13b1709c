//! Integration tests: the real `hub` binary, real sockets, real files. One binary so the crate links once.

// Tests fail loudly on purpose: an unwrap is the assertion.
#![allow(clippy::unwrap_used)]

/// Ends the test at once in the PostgreSQL pass (`HUB_TEST_STORE=postgres`) and says why: for what
/// only SQLite has, and for tests that choose their own store, which the first pass ran already.
macro_rules! sqlite_pass_only {
    ($why:expr) => {
        if $crate::support::on_postgres() {
            $crate::support::skipped($why);
            return;
        }
    };
}

mod actions;
mod alertmanager;
mod browser;
mod cli;
mod contrib;
mod crash;
mod dispatch;
mod dynatrace;
mod edges;
mod email;
mod enrich;
mod errors;
mod escalation;
mod explain;
mod groups;
mod hostile;
mod inbound;
mod ingest;
mod integrations;
mod noise;
mod openapi;
mod opsgenie;
mod packages;
mod page;
mod people;
mod postgres;
mod sources;
mod support;
mod telemetry;
mod tell;
mod tls;
mod triage;
mod upkeep;
