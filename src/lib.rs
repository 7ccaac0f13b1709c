//! hub: receives monitoring notifications durably and runs the actions an operations team uses.
//! The README's Development section says how the parts fit together and which way imports run.

pub mod actions;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod dispatch;
pub mod domain;
pub mod dynatrace;
pub mod explain;
pub mod export;
pub mod feed;
pub mod heartbeat;
pub mod import;
pub mod live;
pub mod logging;
pub mod matcher;
pub mod noise;
pub mod own;
pub mod poll;
pub mod rate;
pub mod reload;
pub mod replay;
pub mod retention;
pub mod retry;
pub mod secret;
pub mod silences;
pub mod small_file;
pub mod sources;
pub mod store;
pub mod template;
pub mod test_action;
pub mod tls;
pub mod web;
pub mod zone;
