//! Enrichment: fetch a Dynatrace problem's details after its notification was answered.
//!
//! A transient failure leaves the enrichment pending with a growing delay (1 s up to 5 min). Routing
//! waits for it up to `dynatrace.enrich_wait`, so the actions see the details whenever Dynatrace
//! gives them in time; paging never waits on Dynatrace for longer. After that wait, without a
//! tenant, or after a permanent failure, routing goes on with the notification alone, and details
//! that arrive later still reach the page and `problems_sent/`.

use crate::clock::now_ms;
use crate::domain::Source;
use crate::store::{DueEnrichment, EnrichmentOutcome, StoreError};
use crate::telemetry::{Kind, Span};

use super::{Inner, Settings};

const FIRST_RETRY_MS: i64 = 1_000;
pub(super) const MAX_RETRY_MS: i64 = 300_000;

pub(super) async fn enrich(
    d: &Inner,
    s: &Settings,
    item: &DueEnrichment,
) -> Result<(), StoreError> {
    let (Some(pid), Some(client)) = (&item.pid, &s.client) else {
        let why = if item.pid.is_none() {
            "no PID"
        } else {
            "dynatrace.tenant is not set"
        };
        return d
            .store
            .record_enrichment(item.notification_id, EnrichmentOutcome::Failed(why))
            .await;
    };
    let mut span = crate::telemetry::stored(item.trace.as_deref()).map(|ingest| {
        let mut span = Span::start("enrich", Kind::Client, Some(ingest));
        span.set("hub.problem_id", item.problem_key.clone());
        span.set("hub.source", Source::Dynatrace.as_str());
        span.set("hub.pid", pid.clone());
        span.set("hub.attempt", item.attempts + 1);
        span
    });
    let fetched = client.problem(pid).await;
    if let Some(mut span) = span.take() {
        match &fetched {
            Ok(_) => span.set("hub.outcome", "enriched"),
            Err(e) => {
                span.set(
                    "hub.outcome",
                    if e.is_transient() { "retry" } else { "failed" },
                );
                span.fail(e.to_string());
            }
        }
        span.end();
    }
    let (error, transient) = match fetched {
        Ok(details) => {
            d.store
                .store_details(item.notification_id, &details.to_string())
                .await?;
            d.store
                .record_enrichment(item.notification_id, EnrichmentOutcome::Done)
                .await?;
            tracing::info!(problem_id = item.problem_key.as_str(), pid, "enriched");
            d.write_sent(Source::Dynatrace, &item.problem_key);
            return Ok(());
        }
        Err(e) => (e.to_string(), e.is_transient()),
    };
    if transient {
        let earlier = u32::try_from(item.attempts).unwrap_or(u32::MAX);
        let delay = crate::retry::backoff(
            std::time::Duration::from_millis(FIRST_RETRY_MS as u64),
            std::time::Duration::from_millis(MAX_RETRY_MS as u64),
            earlier,
        )
        .as_millis() as i64;
        tracing::warn!(
            problem_id = item.problem_key.as_str(), error = %error, retry_in_ms = delay,
            "enrichment failed; will retry"
        );
        d.store
            .record_enrichment(
                item.notification_id,
                EnrichmentOutcome::Retry {
                    error: &error,
                    at_ms: now_ms() + delay,
                },
            )
            .await
    } else {
        tracing::error!(problem_id = item.problem_key.as_str(), error = %error, "enrichment failed for good");
        d.store
            .record_enrichment(item.notification_id, EnrichmentOutcome::Failed(&error))
            .await
    }
}
