//! Integration tests: the real `hub` binary, real sockets, real files. One binary so the crate links once.

// Tests fail loudly on purpose: an unwrap is the assertion.
#![allow(clippy::unwrap_used)]

mod actions;
mod alertmanager;
mod browser;
mod cli;
mod crash;
mod dispatch;
mod dynatrace;
mod edges;
mod email;
mod enrich;
mod errors;
mod explain;
mod hostile;
mod ingest;
mod integrations;
mod noise;
mod page;
mod people;
mod postgres;
mod sources;
mod support;
mod tls;
mod triage;
mod upkeep;
