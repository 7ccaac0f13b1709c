//! One clock for every instance on the store: PostgreSQL's.
//!
//! Leases, takeovers and instances' liveness are written and compared in SQL with the database's
//! own clock ([`DB_NOW_MS`]), so an instance whose clock is off can neither take over a live
//! instance's runs early nor hold its own too long. What an instance computes itself (a retry's
//! due time, "now" for a queue's look-up) is moved onto the database's clock by the offset
//! measured at every heartbeat.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::clock::now_ms;

/// The database's time in milliseconds since the epoch, in SQL.
pub(super) const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Above this, an instance's clock is said to be off (once, until it comes back within it).
const SAY_OFF_MS: i64 = 2_000;

#[derive(Default)]
pub(super) struct StoreClock {
    /// The database's clock minus this instance's, as last measured.
    offset_ms: AtomicI64,
    measured: AtomicBool,
    said: AtomicBool,
    /// When (this instance's clock) the store last could not be reached; 0 when never.
    last_failure_ms: AtomicI64,
}

impl StoreClock {
    /// Now, on the database's clock.
    pub fn now(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// A time this instance computed (a retry's due time) on the database's clock.
    pub fn shift(&self, local_ms: i64) -> i64 {
        local_ms + self.offset_ms.load(Ordering::Relaxed)
    }

    /// The offset, once measured.
    pub fn offset_ms(&self) -> Option<i64> {
        self.measured
            .load(Ordering::Relaxed)
            .then(|| self.offset_ms.load(Ordering::Relaxed))
    }

    /// Records a reading of the database's clock taken between `before` and `after` (this
    /// instance's clock); says once when the two clocks are more than a couple of seconds apart.
    pub fn measured(&self, db_ms: i64, before: i64, after: i64) {
        let offset = db_ms - (before + after) / 2;
        self.offset_ms.store(offset, Ordering::Relaxed);
        self.measured.store(true, Ordering::Relaxed);
        let off = offset.abs() > SAY_OFF_MS;
        if off && !self.said.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                offset_ms = offset,
                "this instance's clock is {:.1} s off from the store's; hub uses the store's clock \
                 for leases and due times, but fix the clock (NTP): logs and files show this one's",
                offset as f64 / 1000.0
            );
        } else if !off && self.said.swap(false, Ordering::Relaxed) {
            tracing::info!(
                offset_ms = offset,
                "this instance's clock agrees with the store's again"
            );
        }
    }

    pub fn failed(&self) {
        self.last_failure_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether this instance may take over others' runs: only after it has reached the store
    /// without a failure for a whole lease. After an outage every owner gets that long to renew
    /// its leases or record its outcomes first, so the owner wins.
    pub fn may_take_over(&self, lease_ms: i64) -> bool {
        let last = self.last_failure_ms.load(Ordering::Relaxed);
        last == 0 || now_ms() - last > lease_ms
    }
}

/// The condition, on `action_runs` as `r`, for a running run to be taken over: its lease ended on
/// the database's clock, its instance has not said it is alive for a whole lease (`$lease`, in
/// ms, the parameter named), and the database itself has been up that long, so that after a
/// restart every owner can renew first.
pub(super) fn takeover(lease_param: &str) -> String {
    format!(
        "(r.status = 'running' AND r.lease_until_ms < {DB_NOW_MS}
          AND NOT EXISTS (SELECT 1 FROM instances i
                          WHERE i.name = r.instance AND i.last_seen_ms >= {DB_NOW_MS} - {lease_param})
          AND pg_postmaster_start_time()
              < clock_timestamp() - ({lease_param} * INTERVAL '1 millisecond'))"
    )
}
