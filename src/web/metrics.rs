//! `GET /metrics`: Prometheus text. Ingest counters and latency are counted as requests arrive (since
//! start, as Prometheus expects); run counts are read from the store at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::domain::Source;
use crate::store::{Store, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

pub struct Metrics {
    registry: Registry,
    notifications: Family<NotificationLabels, Counter>,
    runs: Family<RunLabels, Gauge>,
    pending: Gauge,
    latency: Histogram,
    refused: Family<ReasonLabels, Counter>,
    silences: Gauge,
    beats: Family<NameLabels, Gauge>,
    silent: Family<NameLabels, Gauge>,
    store_healthy: Gauge,
    backlog: Family<ActionLabels, Gauge>,
    oldest_due: Family<ActionLabels, Gauge<f64, AtomicU64>>,
    clock_offset: Gauge<f64, AtomicU64>,
    escalations_open: Gauge,
    escalation_steps: Counter,
    time_to_ack: Histogram,
    /// Up to when steps and acknowledgements were counted: each scrape counts what came since.
    counted_to_ms: std::sync::Mutex<i64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hub");
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications answered since start, by source and outcome (stored, duplicate, test, rejected)",
            notifications.clone(),
        );
        let runs = Family::<RunLabels, Gauge>::default();
        registry.register(
            "action_runs",
            "Action runs in the store, by action and outcome",
            runs.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "action_runs_pending",
            "Action runs waiting to start or to be retried",
            pending.clone(),
        );
        // 0.5 ms to about 4 s.
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "ingest_latency_seconds",
            "Time from a notification's arrival to its answer",
            latency.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections and requests the listener refused since start, by reason",
            refused.clone(),
        );
        let silences = Gauge::default();
        registry.register(
            "silences_active",
            "Silences in force now (maintenance windows not counted)",
            silences.clone(),
        );
        let beats = Family::<NameLabels, Gauge>::default();
        registry.register(
            "heartbeat_last_seconds",
            "When each heartbeat last beat, in seconds since the epoch (absent before its first beat)",
            beats.clone(),
        );
        let silent = Family::<NameLabels, Gauge>::default();
        registry.register(
            "heartbeat_silent",
            "1 while a heartbeat is silent (no beat within its every + grace: its problem is open), else 0",
            silent.clone(),
        );
        let store_healthy = Gauge::default();
        registry.register(
            "store_healthy",
            "1 while a notification posted now would be stored (what /healthz says), else 0",
            store_healthy.clone(),
        );
        let backlog = Family::<ActionLabels, Gauge>::default();
        registry.register(
            "action_backlog",
            "Action runs due now that wait to start, by action",
            backlog.clone(),
        );
        let oldest_due = Family::<ActionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "action_oldest_due_seconds",
            "How long the oldest run due now has waited to start, by action (0 when none waits)",
            oldest_due.clone(),
        );
        let clock_offset = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "clock_offset_seconds",
            "How far this instance's clock is behind the shared store's (negative: ahead); 0 on SQLite",
            clock_offset.clone(),
        );
        let spans = crate::telemetry::counters();
        registry.register(
            "telemetry_spans_exported",
            "Trace spans the OTLP collector took since start (0 while telemetry is off)",
            spans.exported.clone(),
        );
        registry.register(
            "telemetry_spans_dropped",
            "Trace spans lost since start: the queue was full, or the collector refused them or stayed away",
            spans.dropped.clone(),
        );
        let escalations_open = Gauge::default();
        registry.register(
            "escalations_open",
            "Escalations climbing now (not acknowledged, not resolved, steps left)",
            escalations_open.clone(),
        );
        let escalation_steps = Counter::default();
        registry.register(
            "escalation_steps",
            "Escalation steps sent since this instance started (by any instance on the store)",
            escalation_steps.clone(),
        );
        // 5 s to about 11 hours.
        let time_to_ack = Histogram::new(exponential_buckets(5.0, 2.0, 14));
        registry.register(
            "time_to_acknowledge_seconds",
            "From an escalation's start to its acknowledgement, for those acknowledged since this instance started",
            time_to_ack.clone(),
        );
        Metrics {
            registry,
            escalations_open,
            escalation_steps,
            time_to_ack,
            counted_to_ms: std::sync::Mutex::new(crate::clock::now_ms()),
            clock_offset,
            backlog,
            oldest_due,
            notifications,
            runs,
            pending,
            latency,
            refused,
            silences,
            beats,
            silent,
            store_healthy,
        }
    }
}

impl Metrics {
    pub fn answered(&self, source: Source, outcome: &str, seconds: f64) {
        self.notifications
            .get_or_create(&NotificationLabels {
                source: source.as_str().to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.latency.observe(seconds);
    }

    /// Counts one refusal of the listener's; callable from outside the routes.
    pub fn refused_counter(&self) -> impl Fn(super::server::Refused) + Send + Sync + 'static {
        let refused = self.refused.clone();
        move |reason| {
            refused
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str().to_string(),
                })
                .inc();
        }
    }

    /// Notifications refused since start for this source.
    pub fn rejected(&self, source: Source) -> u64 {
        self.notifications
            .get_or_create(&NotificationLabels {
                source: source.as_str().to_string(),
                outcome: "rejected".to_string(),
            })
            .get()
    }

    /// Adds the reload gauges (Alertmanager's names), which the reloader sets.
    pub fn register_reloads(&mut self, status: &crate::reload::ReloadStatus) {
        self.registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            status.successful.clone(),
        );
        self.registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            status.succeeded_at.clone(),
        );
    }

    /// Adds what retention deleted since start.
    pub fn register_pruned(&mut self, pruned: &crate::retention::Counters) {
        self.registry.register(
            "pruned_problems",
            "Problems deleted by retention since start",
            pruned.problems.clone(),
        );
        self.registry.register(
            "pruned_notifications",
            "Notifications deleted by retention since start, with their files, runs and attempts",
            pruned.notifications.clone(),
        );
    }

    /// The metrics now; `heartbeats` are the names of the configured heartbeats.
    pub async fn render(&self, store: &Store, heartbeats: &[String]) -> Result<String, StoreError> {
        // First, before any read: a store that refuses writes may still answer them.
        self.store_healthy.set(i64::from(store.health().is_ok()));
        self.runs.clear();
        let counts = store.action_counts().await?;
        for a in &counts {
            for (outcome, n) in [
                ("succeeded", a.succeeded),
                ("failed", a.failed),
                ("pending", a.pending),
                ("retrying", a.retrying),
                ("running", a.running),
                ("held_back", a.held_back),
                ("silenced", a.silenced),
                ("suppressed", a.suppressed),
            ] {
                self.runs
                    .get_or_create(&RunLabels {
                        action: a.action.clone(),
                        outcome: outcome.to_string(),
                    })
                    .set(n);
            }
        }
        self.pending.set(store.pending_runs().await?);
        let now = crate::clock::now_ms();
        // Every action that has runs shows a backlog, 0 included, so an alert on it has a series.
        self.backlog.clear();
        self.oldest_due.clear();
        for a in &counts {
            let labels = ActionLabels {
                action: a.action.clone(),
            };
            self.backlog.get_or_create(&labels).set(0);
            self.oldest_due.get_or_create(&labels).set(0.0);
        }
        for b in store.backlogs(now).await? {
            let labels = ActionLabels { action: b.action };
            self.backlog.get_or_create(&labels).set(b.due);
            let waited = (now - b.oldest_due_ms).max(0) as f64 / 1000.0;
            self.oldest_due.get_or_create(&labels).set(waited);
        }
        let active = store
            .silences(now)
            .await?
            .iter()
            .filter(|s| s.is_active(now))
            .count();
        self.silences.set(active as i64);
        self.beats.clear();
        for (name, at) in store.beats().await? {
            self.beats
                .get_or_create(&NameLabels { name })
                .set(at / 1000);
        }
        // Every configured heartbeat has a series, 0 included, so an alert on it has one.
        self.silent.clear();
        for name in heartbeats {
            let open = crate::own::is_open(store, &crate::heartbeat::problem_id(name)).await?;
            self.silent
                .get_or_create(&NameLabels { name: name.clone() })
                .set(i64::from(open));
        }
        self.clock_offset
            .set(store.clock_offset_ms().unwrap_or(0) as f64 / 1000.0);
        self.escalations_open.set(store.open_escalations().await?);
        // Each scrape takes the window since the last one first, so two at once count nothing
        // twice.
        let from = {
            let mut counted = self.counted_to_ms.lock().unwrap_or_else(|p| p.into_inner());
            let to = now.max(*counted);
            std::mem::replace(&mut *counted, to)
        };
        let (steps, took) = store.escalation_activity(from, now).await?;
        self.escalation_steps.inc_by(steps.max(0) as u64);
        for ms in took {
            self.time_to_ack.observe(ms.max(0) as f64 / 1000.0);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).map_err(|e| {
            StoreError::Encode {
                what: "the metrics",
                detail: e.to_string(),
            }
        })?;
        Ok(text)
    }
}
