//! The dispatcher: everything that happens after a notification is answered.
//!
//! Its queue is the store. Each pass enriches what is due, routes what is ready into action runs,
//! then starts the runs that are due, as far as each action's concurrency limit allows. A run is
//! claimed in the store before it starts and its outcome recorded after, so a crash at any moment
//! loses nothing, and only a run that was in flight can run a second time.

mod enrich;
mod escalate;
mod group;
pub mod sent;
mod trace;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::actions::route::route;
use crate::actions::{idem_key, run_id, ActionError, Job, Problem, Registry, Target};
use crate::clock::now_ms;
use crate::config::{Actions, Config};
use crate::domain::Source;
use crate::dynatrace::Client;
use crate::live::Live;
use crate::logging::{SharedThrottle, Throttle};
use crate::store::{Claim, Finish, NewRun, Room, RunRow, Store, StoreError, StoredNotification};
use crate::telemetry::SpanContext;

/// How often the queue is looked at when nothing wakes the dispatcher.
const IDLE_POLL: Duration = Duration::from_secs(1);
const BATCH: i64 = 64;

/// How many openings routing looks up at once.
const EPISODE_LOOKUPS: usize = 8;
/// How long a comment waits before looking again at the runs it reports.
const DEPENDENCY_WAIT_MS: i64 = 500;
/// Commands without a server wait for work due this soon; anything later is left to the hub.
const SHORT_WAIT_MS: i64 = 10_000;
const ENRICH_CONCURRENCY: usize = 8;
/// How often silences' and windows' ends and heartbeats are looked at.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// Backoff while the store refuses writes: from the first wait, doubling, up to the longest.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// The longest an enrichment waits between tries (see `enrich`).
const ENRICH_MAX_WAIT_MS: i64 = enrich::MAX_RETRY_MS;

pub struct Dispatcher {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Store,
    /// What the config decides; a reload swaps it whole, and a run keeps the one it started with.
    settings: Live<Settings>,
    wake: Arc<Notify>,
    in_flight: Mutex<HashSet<i64>>,
    /// Enrichments run side by side, so one slow call to Dynatrace does not hold up the others.
    enrich_limit: Arc<Semaphore>,
    enriching: Mutex<HashSet<i64>>,
    sent: Arc<sent::SentFiles>,
    /// Says once in a while that runs wait for a rate limit, not once per run.
    rate_log: SharedThrottle,
    /// When this process started: heartbeats' clocks start no earlier.
    started_ms: i64,
    /// When silences, maintenance windows and heartbeats were last looked at.
    last_upkeep: Mutex<Option<std::time::Instant>>,
    /// Failure alarms are checked and opened one at a time, so two runs failing together open
    /// one alarm, not two.
    alarms: tokio::sync::Mutex<()>,
    /// The key acknowledgement links are signed with, read from the store once.
    link_key: tokio::sync::OnceCell<String>,
}

/// The dispatcher's part of the config, made ready to use.
pub struct Settings {
    client: Option<Client>,
    registry: Registry,
    actions: Actions,
    tenant: Option<String>,
    /// How long routing waits for a Dynatrace problem's details before it goes on without them.
    enrich_wait_ms: i64,
    limits: HashMap<String, Arc<Semaphore>>,
    /// Per action with a `rate_limit_per_minute`: the runs started in the last minute.
    rates: HashMap<String, Arc<Mutex<crate::rate::Window>>>,
    maintenance: Vec<crate::noise::config::Maintenance>,
    heartbeats: Vec<crate::noise::config::Heartbeat>,
    people: crate::people::PeopleConfig,
    escalation: crate::escalate::EscalationConfig,
    /// What an acknowledgement tells the sources, made once per config (not once per pass).
    tells: crate::escalate::tell::Tell,
}

impl Settings {
    /// Builds every action of `config`. `before`, when reloading, lends its concurrency limits to
    /// the actions whose limit did not change, so runs in flight still count against them.
    pub fn new(config: &Config, before: Option<&Settings>) -> Result<Settings, StartError> {
        let client = Client::from_config(&config.dynatrace)?;
        let registry = Registry::build(&config.actions, client.as_ref())?;
        let limits = config
            .actions
            .actions
            .iter()
            .map(|a| {
                let kept = before.and_then(|b| {
                    let old = b.actions.actions.iter().find(|o| o.name == a.name)?;
                    (old.max_concurrent == a.max_concurrent).then(|| b.limits.get(&a.name))?
                });
                let limit = match kept {
                    Some(s) => s.clone(),
                    None => Arc::new(Semaphore::new(a.max_concurrent)),
                };
                (a.name.clone(), limit)
            })
            .collect();
        // A window whose limit did not change is kept, so a reload does not grant a fresh minute.
        let rates = config
            .actions
            .actions
            .iter()
            .filter_map(|a| {
                let per_minute = a.rate_limit_per_minute?;
                let kept = before
                    .and_then(|b| b.rates.get(&a.name))
                    .filter(|w| lock(w).per_minute() == per_minute)
                    .cloned();
                let window = kept
                    .unwrap_or_else(|| Arc::new(Mutex::new(crate::rate::Window::new(per_minute))));
                Some((a.name.clone(), window))
            })
            .collect();
        Ok(Settings {
            client,
            registry,
            actions: config.actions.clone(),
            tenant: config.dynatrace.tenant.clone(),
            enrich_wait_ms: config.dynatrace.enrich_wait.as_millis() as i64,
            limits,
            rates,
            maintenance: config.maintenance.clone(),
            heartbeats: config.heartbeats.clone(),
            people: config.people.clone(),
            escalation: config.escalation.clone(),
            tells: crate::escalate::tell::Tell::of(&config.actions, &config.people),
        })
    }

    /// Every action that could start a run now, with how many (a pass takes at most `BATCH`).
    fn room(&self) -> Vec<Room> {
        let mut room: Vec<Room> = self
            .limits
            .iter()
            .filter_map(|(name, limit)| {
                let free = limit.available_permits().min(BATCH as usize);
                let in_order = self
                    .registry
                    .get(name)
                    .is_some_and(|(_, action)| action.keeps_thread());
                (free > 0).then(|| Room {
                    action: name.clone(),
                    free: free as i64,
                    in_order,
                })
            })
            .collect();
        // A stable order, so the look-ups read alike from pass to pass.
        room.sort();
        room
    }

    fn permit(&self, action: &str) -> Option<OwnedSemaphorePermit> {
        self.limits.get(action)?.clone().try_acquire_owned().ok()
    }

    /// Counts a start against the action's rate limit; when the minute is full, how long until it
    /// has room, and the limit.
    fn rate_slot(&self, action: &str) -> Result<(), (Duration, u32)> {
        let Some(window) = self.rates.get(action) else {
            return Ok(());
        };
        let mut w = lock(window);
        let per_minute = w.per_minute();
        w.take(std::time::Instant::now())
            .map_err(|wait| (wait, per_minute))
    }

    fn problem(&self, n: &StoredNotification) -> Problem {
        Problem::from_stored(n).with_tenant_link(self.tenant.as_deref())
    }
}

/// Why a dispatcher could not be made from the config.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Dynatrace(#[from] crate::dynatrace::DynatraceError),
    #[error(transparent)]
    Actions(#[from] crate::actions::BuildError),
}

impl Dispatcher {
    pub fn new(config: &Config, store: Store) -> Result<Dispatcher, StartError> {
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                wake: store.committed(),
                sent: sent::SentFiles::new(store.clone(), config.dir_sent.clone()),
                store,
                settings: Live::new(Settings::new(config, None)?),
                in_flight: Mutex::new(HashSet::new()),
                enrich_limit: Arc::new(Semaphore::new(ENRICH_CONCURRENCY)),
                enriching: Mutex::new(HashSet::new()),
                rate_log: SharedThrottle::new(ERROR_LOG_INTERVAL),
                started_ms: now_ms(),
                last_upkeep: Mutex::new(None),
                alarms: tokio::sync::Mutex::new(()),
                link_key: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// Where a reload puts the dispatcher's new settings.
    pub fn settings(&self) -> SettingsHandle {
        SettingsHandle(self.inner.clone())
    }

    /// Puts back in the queue what a crash left in flight. Call once, before `run` (which checks
    /// the `problems_sent/` files beside its work).
    pub async fn recover(&self) -> Result<u64, StoreError> {
        let n = self.inner.store.recover_in_flight(None).await?;
        if n > 0 {
            tracing::warn!(
                runs = n,
                "runs were in flight when hub last stopped; they run again now (each carries its \
                 HUB_RUN_ID / webhook-id so the far side can tell)"
            );
        }
        Ok(n)
    }

    /// Works until `shutdown` turns true, then lets running actions finish within `grace`; what is
    /// still running after that is stopped and left pending for the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        // Beside the work, not before it: with many problems, checking every file takes a while.
        let sent = self.inner.sent.clone();
        tasks.spawn(async move {
            match sent::repair(&sent).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    files = n,
                    "rewriting problems_sent/ files older than their problem"
                ),
                Err(e) => tracing::error!(error = %e, "cannot check problems_sent/"),
            }
        });
        // A store that fails every write (a full disk) fails every pass: back off, say so once per
        // interval, and go on by itself once it takes writes again.
        let mut failures = 0u32;
        let mut errors = Throttle::new(ERROR_LOG_INTERVAL);
        while !*shutdown.borrow() {
            let started = match self.step(&mut tasks).await {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(failed_passes = failures, "the dispatcher works again");
                        failures = 0;
                    }
                    n
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if let Some(held_back) = errors.ready() {
                        tracing::error!(
                            error = %e, similar_errors_since_last_line = held_back,
                            "the dispatcher cannot use the store; trying again with backoff"
                        );
                    }
                    let wait = STORE_RETRY_FIRST
                        .saturating_mul(1 << failures.min(8))
                        .min(STORE_RETRY_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            while tasks.try_join_next().is_some() {}
            if started == 0 {
                tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        self.drain(tasks).await;
    }

    async fn drain(&self, tasks: JoinSet<()>) {
        self.stop_running(tasks).await;
        self.inner.sent.flush().await;
    }

    async fn stop_running(&self, mut tasks: JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        let grace = Duration::from_secs(
            self.inner
                .settings
                .get()
                .actions
                .dispatch
                .shutdown_grace_secs,
        );
        tracing::info!(
            running = tasks.len(),
            grace_secs = grace.as_secs(),
            "waiting for running actions"
        );
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let left: Vec<i64> = self.inner.in_flight().into_iter().collect();
            match self.inner.store.recover_in_flight(Some(&left)).await {
                Ok(n) => tracing::warn!(
                    runs = n,
                    "stopped runs past the shutdown deadline; they run again at the next start"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot put stopped runs back; the next start will")
                }
            }
        }
    }

    /// One pass over the queue; returns how many items it started or finished. Tests call it.
    pub async fn step(&self, tasks: &mut JoinSet<()>) -> Result<usize, StoreError> {
        let d = &self.inner;
        let s = d.settings.get();
        let mut done = self.upkeep(&s).await?;
        let due = d.store.due_enrichments(ENRICH_MAX_WAIT_MS, BATCH).await?;
        if s.client.is_none() && !due.is_empty() {
            // Nothing to ask: close them all at once, so routing goes on with the notifications.
            let ids: Vec<i64> = due.iter().map(|e| e.notification_id).collect();
            d.store
                .fail_enrichments(&ids, "dynatrace.tenant is not set")
                .await?;
            done += ids.len();
        }
        for item in due.into_iter().filter(|_| s.client.is_some()) {
            if locked(&d.enriching).contains(&item.notification_id) {
                continue;
            }
            let Ok(permit) = d.enrich_limit.clone().try_acquire_owned() else {
                break;
            };
            locked(&d.enriching).insert(item.notification_id);
            let (inner, settings) = (self.inner.clone(), s.clone());
            tasks.spawn(async move {
                if let Err(e) = enrich::enrich(&inner, &settings, &item).await {
                    tracing::error!(error = %e, "cannot record an enrichment; it is tried again");
                }
                locked(&inner.enriching).remove(&item.notification_id);
                drop(permit);
                inner.wake.notify_one();
            });
            done += 1;
        }
        let plans = d.store.due_plans(s.enrich_wait_ms, BATCH).await?;
        if !plans.is_empty() {
            self.plan(&s, &plans).await?;
            done += plans.len();
        }
        done += escalate::tick(d, &s).await?;
        done += group::tick(d, &s).await?;
        // Everything that can start now is claimed in one write (one commit for the lot).
        let mut chosen = Vec::new();
        let max_wait_ms = (s.actions.dispatch.max_retry_secs * 1000) as i64;
        // Each action with room takes its own due runs, so a saturated action's backlog never
        // stands in front of another action's page.
        let wanted = s.room();
        let due = if wanted.is_empty() {
            Vec::new()
        } else {
            d.store.due_runs_of(&wanted, max_wait_ms).await?
        };
        for run in due {
            if locked(&d.in_flight).contains(&run.id) {
                continue;
            }
            if !self.dependencies_done(&s, &run).await? {
                d.store
                    .defer(run.id, now_ms() + DEPENDENCY_WAIT_MS, None)
                    .await?;
                continue;
            }
            let Some(permit) = s.permit(&run.action) else {
                continue;
            };
            if let Err((wait, per_minute)) = s.rate_slot(&run.action) {
                drop(permit);
                let note = format!(
                    "held back by rate_limit_per_minute ({per_minute}): runs in {} s",
                    wait.as_secs().max(1)
                );
                if let Some(held_back) = d.rate_log.ready() {
                    tracing::warn!(
                        action = %run.action, problem_id = run.problem_key.as_str(),
                        wait_ms = wait.as_millis() as u64, similar_lines_held_back = held_back,
                        "action over its rate limit; its run waits"
                    );
                }
                d.store
                    .defer(run.id, now_ms() + wait.as_millis() as i64, Some(note))
                    .await?;
                continue;
            }
            chosen.push((run, permit));
        }
        if chosen.is_empty() {
            return Ok(done);
        }
        // The claim brings what each run needs (its notification, its thread): starting a run
        // costs no further call to the store.
        let wanted = chosen
            .iter()
            .map(|(run, _)| (run.id, crate::actions::episode_of(&run.idem_key)))
            .collect();
        let claims = d.store.claim_many(wanted).await?;
        for ((run, permit), claim) in chosen.into_iter().zip(claims) {
            let Some(claim) = claim else {
                continue;
            };
            d.in_flight_insert(run.id);
            let (inner, settings) = (self.inner.clone(), s.clone());
            tasks.spawn(async move {
                let id = run.id;
                inner.execute(&settings, run, claim, false, permit).await;
                inner.in_flight_remove(id);
                inner.wake.notify_one();
            });
            done += 1;
        }
        Ok(done)
    }

    /// Works the queue until nothing is due (or `budget` is spent), for commands that run actions
    /// without a server. Returns whether everything due got done; later retries stay in the queue.
    pub async fn work_until_idle(&self, budget: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + budget;
        let mut tasks = JoinSet::new();
        loop {
            let started = self.step(&mut tasks).await?;
            if started == 0 {
                if tasks.is_empty() {
                    // A comment waiting for its runs, or a quick retry, is worth waiting for.
                    match self.inner.store.earliest_pending_ms().await? {
                        Some(at)
                            if at - now_ms() <= SHORT_WAIT_MS
                                && tokio::time::Instant::now() < deadline =>
                        {
                            let wait = (at - now_ms()).max(10) as u64;
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                            continue;
                        }
                        Some(_) => {
                            self.inner.sent.flush().await;
                            return Ok(false);
                        }
                        None => {
                            self.inner.sent.flush().await;
                            return Ok(true);
                        }
                    }
                }
                if tokio::time::timeout_at(deadline, tasks.join_next())
                    .await
                    .is_err()
                {
                    self.drain(tasks).await;
                    return Ok(false);
                }
            }
        }
    }

    /// Once a second at most: puts back what an ended silence or maintenance window held, and
    /// opens or resolves heartbeats. Returns how many runs it put back.
    async fn upkeep(&self, s: &Settings) -> Result<usize, StoreError> {
        let d = &self.inner;
        {
            let mut last = d.last_upkeep.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < UPKEEP_EVERY) {
                return Ok(0);
            }
            *last = Some(std::time::Instant::now());
        }
        let now = now_ms();
        let released =
            crate::noise::settle(&d.store, &s.maintenance, s.tenant.as_deref(), now).await?;
        crate::heartbeat::check(&d.store, &s.heartbeats, d.started_ms, now).await?;
        Ok(released + self.orphans().await?)
    }

    /// Puts back in the queue this instance's runs the store holds as running under a lease
    /// that ended while this instance is not running them: a claim that committed but whose
    /// answer was lost with the database. No other instance takes over a live instance's runs
    /// (the owner wins), so the owner must. Returns how many.
    async fn orphans(&self) -> Result<usize, StoreError> {
        let d = &self.inner;
        let lapsed = d.store.lapsed_own_runs().await?;
        let in_flight = d.in_flight();
        let orphans: Vec<i64> = lapsed
            .into_iter()
            .filter(|id| !in_flight.contains(id))
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let n = d.store.recover_in_flight(Some(&orphans)).await?;
        tracing::warn!(
            runs = n,
            "runs claimed by this instance while the store was away were never started; they run now"
        );
        Ok(n as usize)
    }

    /// An action that depends on others (a comment) waits until all their runs have finished.
    async fn dependencies_done(&self, s: &Settings, run: &RunRow) -> Result<bool, StoreError> {
        let Some((_, action)) = s.registry.get(&run.action) else {
            return Ok(true);
        };
        // An action that keeps a thread gets no run while its own earlier run of the problem and
        // target is unfinished: `due_runs_of` leaves those out (see `Room::in_order`).
        if action.depends_on().is_empty() {
            return Ok(true);
        }
        let reported = self.inner.reports(run, action.depends_on()).await?;
        Ok(reported.iter().all(RunRow::is_final))
    }

    /// Routes every plan that is ready, in one transaction.
    async fn plan(&self, s: &Settings, notification_ids: &[i64]) -> Result<(), StoreError> {
        let d = &self.inner;
        if s.actions.actions.is_empty() {
            // Nothing can be chosen, so the notifications are not read (a hub that only receives
            // spent a fifth of its request threads' time reading and parsing them for nothing).
            return d.store.close_plans(notification_ids.to_vec()).await;
        }
        let began = crate::telemetry::on().then(crate::telemetry::now_ns);
        let mut planned = Vec::with_capacity(notification_ids.len());
        let grouping = s.actions.routes.iter().flatten().any(|r| r.group.is_some());
        let now = now_ms();
        let quiet = crate::noise::Quiet::now(&d.store, &s.maintenance, now).await?;
        let routed: Vec<_> = d
            .store
            .notifications(notification_ids)
            .await?
            .into_iter()
            .map(|n| {
                let problem = s.problem(&n);
                let decision = route(&s.actions, &s.registry, &problem, n.notification.is_test);
                (n, problem, decision)
            })
            .collect();
        // Which opening each belongs to depends only on notifications stored before it, so the
        // look-ups run side by side: one after the other they were a round trip each on
        // PostgreSQL. A few at a time, to leave the pool's other connections to the writer.
        let mut episodes = Vec::with_capacity(routed.len());
        for some in routed.chunks(EPISODE_LOOKUPS) {
            let lookups = some
                .iter()
                .map(|(n, _, decision)| opening(&d.store, n, !decision.chosen.is_empty()));
            episodes.extend(futures_util::future::try_join_all(lookups).await?);
        }
        if grouping {
            let decided = routed
                .iter()
                .map(|(n, p, decision)| (n, p, &decision.groups[..]));
            group::routed(d, decided, now).await?;
        }
        let mut escalations = Vec::with_capacity(routed.len());
        for ((n, problem, decision), episode) in routed.into_iter().zip(episodes) {
            escalations.push(decision.escalate.clone());
            let covered = quiet.covering(&problem);
            let mut runs = Vec::new();
            for c in &decision.chosen {
                // The rule `hub explain` applies too. A close suppresses the problem's held runs in
                // the store, in the transaction that inserts its own (see `Store::insert_runs`).
                let start = crate::noise::start_of(
                    covered.as_ref(),
                    c.wait,
                    crate::store::is_closed(&problem.state, false),
                    n.received_at_ms,
                    now,
                );
                runs.extend(c.targets.iter().map(|t| NewRun {
                    idem_key: idem_key(&problem, &c.action, t, episode),
                    action: c.action.clone(),
                    target: t.id.clone(),
                    target_label: t.label.clone(),
                    priority: c.priority,
                    start: start.clone(),
                }));
            }
            planned.push((n, runs));
        }
        let batch: Vec<(&StoredNotification, Vec<NewRun>)> =
            planned.iter().map(|(n, r)| (n, r.clone())).collect();
        let new = d.store.insert_runs(&batch).await?;
        if let Some(began) = began {
            trace::routing(&planned, &new, began);
        }
        for ((stored, runs), &new) in planned.iter().zip(&new) {
            if runs.is_empty() {
                continue;
            }
            let n = &stored.notification;
            tracing::info!(
                source = %n.source, problem_id = n.problem_key.as_str(), state = n.state.as_str(),
                runs = runs.len(), new, already_known = runs.len() - new,
                with_details = stored.details.is_some(),
                "routed"
            );
            // No file yet: `problems_sent/` shows what was done, so a problem's file is written
            // at its first outcome. Writing it here too cost each run a second file under load.
        }
        // Without policies nothing escalates, and nothing is left running to stop.
        let escalating = !s.escalation.policies.is_empty();
        for ((stored, _), policy) in planned.iter().zip(escalations).filter(|_| escalating) {
            let policy = policy.as_ref().map(|(p, w)| (p.as_str(), *w));
            escalate::routed(&d.store, &s.tells, stored, policy, now).await?;
        }
        Ok(())
    }
}

impl Inner {
    fn in_flight(&self) -> HashSet<i64> {
        locked(&self.in_flight).clone()
    }

    fn in_flight_insert(&self, id: i64) {
        locked(&self.in_flight).insert(id);
    }

    fn in_flight_remove(&self, id: i64) {
        locked(&self.in_flight).remove(&id);
    }

    /// One attempt of a claimed run, recorded whatever happens. The action's slot (`permit`)
    /// is given back as soon as the far side has answered: `max_concurrent` bounds what the far
    /// side sees, and holding the slot through the outcome's commit halved what an action with
    /// few slots could send.
    async fn execute(
        &self,
        s: &Settings,
        run: RunRow,
        claim: Claim,
        manual: bool,
        permit: OwnedSemaphorePermit,
    ) {
        let attempt = claim.attempt;
        let span = trace::action_span(&run, &claim);
        let trace = span.as_ref().map(|s| s.context);
        let finish = match self.holding_lease(s, &run, claim, trace).await {
            Ok(f) => f,
            Err(e) => Finish::Retry {
                error: format!("cannot prepare the run: {e}"),
                outcome: "null".into(),
                retry_at_ms: now_ms() + 5_000,
            },
        };
        drop(permit);
        if let Some(span) = span {
            trace::attempted(span, attempt, manual, &finish);
        }
        // The run stays in flight (and claimed in the store) until its outcome is recorded, so
        // the freed slot never starts it again; wake the dispatcher to give the slot to the next.
        self.wake.notify_one();
        log_finish(&run, attempt, manual, &finish);
        self.record(&run, attempt, &finish).await;
        self.write_sent(run.source, &run.problem_key);
        if let Err(e) = self.alarm(s, &run, &finish).await {
            tracing::error!(action = %run.action, error = %e, "cannot raise or resolve the failure alarm");
        }
    }

    /// A run that failed for good opens its action's failure alarm; a success resolves it. Runs
    /// for hub's own problems raise nothing, so a failing fallback cannot loop.
    async fn alarm(&self, s: &Settings, run: &RunRow, finish: &Finish) -> Result<(), StoreError> {
        if run.source == Source::Hub {
            return Ok(());
        }
        let fallbacks = s.actions.alarm_actions(&run.action);
        if fallbacks.is_empty() {
            return Ok(());
        }
        let _one_at_a_time = self.alarms.lock().await;
        match finish {
            Finish::Failed { error, .. } => {
                let own = crate::own::failure(&run.action, &run.target, error, fallbacks);
                crate::own::open(&self.store, &own, now_ms()).await?;
            }
            Finish::Succeeded { .. } => {
                // Only a success where it failed: one bad recipient beside good ones must not
                // open and resolve the alarm with every problem.
                let id = format!("action-failed-{}", run.action);
                let Some(latest) = self.store.latest_notification(Source::Hub, &id).await? else {
                    return Ok(());
                };
                let opened: serde_json::Value =
                    serde_json::from_slice(&latest.notification.body).unwrap_or_default();
                let failed_on = opened.pointer("/detail/target").and_then(|t| t.as_str());
                if latest.notification.state == "OPEN" && failed_on.is_none_or(|t| t == run.target)
                {
                    crate::own::resolve(
                        &self.store,
                        &id,
                        serde_json::json!({"action": run.action, "target": run.target,
                                           "succeeded_at": now_ms()}),
                    )
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs the attempt, renewing the run's lease meanwhile where instances share the store, so
    /// that no other takes it over while it runs. A run taken over anyway (this instance stalled
    /// past its lease) finishes here, but its outcome is not recorded over its successor's.
    async fn holding_lease(
        &self,
        s: &Settings,
        run: &RunRow,
        claim: Claim,
        trace: Option<SpanContext>,
    ) -> Result<Finish, StoreError> {
        let attempt = claim.attempt;
        let work = self.attempt(s, run, claim, trace);
        let Some(lease) = self.store.lease() else {
            return work.await;
        };
        tokio::pin!(work);
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                finish = &mut work => return finish,
                _ = renew.tick() => match self.store.renew(run.id, attempt).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        run = run.id, attempt,
                        "this run was taken over by another instance while it ran here"
                    ),
                    Err(e) => tracing::warn!(run = run.id, error = %e, "cannot renew a run's lease"),
                },
            }
        }
    }

    /// The runs of the same state change by the actions `run`'s action depends on.
    async fn reports(&self, run: &RunRow, actions: &[String]) -> Result<Vec<RunRow>, StoreError> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .group_runs(run.source, &run.problem_key, &run.state, actions)
            .await
    }

    /// Records an attempt's outcome, trying again until the store takes it (a full disk that
    /// clears): the run stays claimed meanwhile, so nothing starts it a second time. Only a stop
    /// before the store takes it leaves the run in flight, to run again at the next start.
    async fn record(&self, run: &RunRow, attempt: i64, finish: &Finish) {
        let mut wait = STORE_RETRY_FIRST;
        let mut errors = Throttle::new(ERROR_LOG_INTERVAL);
        loop {
            match self.store.finish(run.id, attempt, finish).await {
                Ok(()) => return,
                Err(StoreError::Closed) => {
                    tracing::error!(run = run.id, "the store closed before the outcome was recorded; the run runs again at the next start");
                    return;
                }
                Err(e) => {
                    if let Some(held_back) = errors.ready() {
                        tracing::error!(
                            run = run.id, error = %e, similar_errors_since_last_line = held_back,
                            "cannot record the outcome yet; trying again (the run is not started again)"
                        );
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(STORE_RETRY_MAX);
                }
            }
        }
    }

    async fn attempt(
        &self,
        s: &Settings,
        run: &RunRow,
        claim: Claim,
        trace: Option<SpanContext>,
    ) -> Result<Finish, StoreError> {
        let Claim {
            attempt,
            notification,
            thread,
        } = claim;
        let mut problem = s.problem(&notification);
        let group = match crate::group::send_of(&run.idem_key) {
            Some((id, send)) => group::view(self, id, send).await?,
            // An escalation's step for a group speaks of the group, as its sends do.
            None if run.idem_key.starts_with("esc/") => {
                match crate::group::carrying(&self.store, run.source, &run.problem_key).await? {
                    Some(g) => group::view(self, g.id, g.sends).await?,
                    None => None,
                }
            }
            None => None,
        };
        if let Some(g) = &group {
            problem = g.problem(&problem);
        }
        // A run that tells the source of an acknowledgement or a resolve speaks of that state.
        if let Some(event) = crate::escalate::tell::event_of(&run.idem_key) {
            problem.state = event.state().to_string();
        }
        let Some((_, action)) = s.registry.get(&run.action) else {
            return Ok(Finish::Failed {
                error: format!("action {} is no longer configured", run.action),
                outcome: "null".into(),
            });
        };
        let target = action
            .targets(&problem)
            .into_iter()
            .find(|t| t.id == run.target)
            .unwrap_or_else(|| Target {
                id: run.target.clone(),
                label: run.target_label.clone(),
                entity: None,
            });
        let reports = self.reports(run, action.depends_on()).await?;
        let escalated = escalate::context(self, s, run).await?;
        let job = Job {
            group,
            escalated,
            run_id: run_id(&run.idem_key),
            attempt,
            problem: &problem,
            target,
            reports,
            thread,
            trace: trace.map(|t| t.traceparent()),
        };
        let result = action.run(&job).await;
        Ok(finish_for(s, result, attempt))
    }

    fn write_sent(&self, source: Source, problem_key: &str) {
        self.sent.mark(source, problem_key);
    }
}

/// What the store records for an attempt's result, under the retry policy `s` has.
fn finish_for(
    s: &Settings,
    result: Result<crate::actions::Outcome, ActionError>,
    attempt: i64,
) -> Finish {
    let policy = &s.actions.dispatch;
    match result {
        Ok(o) => Finish::Succeeded {
            summary: o.summary,
            outcome: o.detail.to_string(),
            thread: o.thread,
        },
        Err(ActionError::HeldBack(reason)) => Finish::HeldBack { reason },
        Err(ActionError::Permanent { message, detail }) => Finish::Failed {
            error: message,
            outcome: detail.to_string(),
        },
        Err(ActionError::Transient {
            message,
            detail,
            retry_after,
        }) => {
            if attempt >= i64::from(policy.max_attempts) {
                return Finish::Failed {
                    error: format!("gave up after {attempt} attempt(s): {message}"),
                    outcome: detail.to_string(),
                };
            }
            let max = Duration::from_secs(policy.max_retry_secs);
            let first = Duration::from_secs(policy.first_retry_secs);
            let earlier = u32::try_from(attempt - 1).unwrap_or(u32::MAX);
            let mut delay = crate::retry::backoff(first, max, earlier);
            if let Some(asked) = retry_after {
                delay = delay.max(asked.min(max));
            }
            let delay = delay.as_millis() as i64;
            Finish::Retry {
                error: message,
                outcome: detail.to_string(),
                retry_at_ms: now_ms() + delay,
            }
        }
    }
}

/// Swaps a running dispatcher's settings (see [`Dispatcher::settings`]).
#[derive(Clone)]
pub struct SettingsHandle(Arc<Inner>);

impl SettingsHandle {
    /// Builds the settings of `config` beside the ones in use; nothing changes if that fails.
    pub fn prepare(&self, config: &Config) -> Result<Settings, StartError> {
        Settings::new(config, Some(&self.0.settings.get()))
    }

    /// From the next pass on, new runs start with `settings`; runs in flight keep theirs.
    pub fn put(&self, settings: Settings) {
        self.0.settings.set(settings);
        self.0.wake.notify_one();
    }
}

/// A window shared between passes; a panic while holding it leaves it usable.
fn lock(w: &Mutex<crate::rate::Window>) -> std::sync::MutexGuard<'_, crate::rate::Window> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// A set shared with the tasks; a task that panicked while holding it leaves it usable.
fn locked(set: &Mutex<HashSet<i64>>) -> std::sync::MutexGuard<'_, HashSet<i64>> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_finish(run: &RunRow, attempt: i64, manual: bool, finish: &Finish) {
    let (action, target, problem) = (
        run.action.as_str(),
        run.target_label.as_str(),
        run.problem_key.as_str(),
    );
    match finish {
        Finish::Succeeded { .. } => {
            tracing::info!(action = %action, target, problem_id = problem, attempt, manual, "action succeeded")
        }
        Finish::Retry {
            error, retry_at_ms, ..
        } => tracing::warn!(
            action = %action, target, problem_id = problem, attempt, manual, error = %error,
            retry_in_ms = retry_at_ms - now_ms(), "action failed; will retry"
        ),
        Finish::Failed { error, .. } => tracing::error!(
            action = %action, target, problem_id = problem, attempt, manual, error = %error,
            "action failed for good"
        ),
        Finish::HeldBack { reason } => tracing::warn!(
            action = %action, target, problem_id = problem, reason = %reason, "action held back"
        ),
    }
}

/// The opening a routed notification belongs to (see `Store::episode`); nothing to look up when
/// it runs no action.
async fn opening(
    store: &Store,
    stored: &StoredNotification,
    runs_actions: bool,
) -> Result<Option<i64>, StoreError> {
    if !runs_actions {
        return Ok(None);
    }
    let (id, n) = (stored.id, &stored.notification);
    let closed = crate::store::is_closed(&n.state, false);
    store.episode(n.source, &n.problem_key, id, closed).await
}

#[cfg(test)]
mod tests {
    //! The dispatcher's pass against a temporary SQLite store: routing, then starting runs by
    //! each action's room and priority.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::{Facts, Notification};

    async fn setup(actions: serde_json::Value) -> (tempfile::TempDir, Store, Dispatcher) {
        let dir = tempfile::tempdir().unwrap();
        let text = serde_json::json!({
            "webhook": {"username": "u", "password": "a-password-for-tests"},
            "store": {"url": format!("sqlite://{}", dir.path().join("hub.db").display())},
            "dir_received": dir.path().join("received"),
            "dir_sent": dir.path().join("sent"),
            "actions": actions["actions"],
            "routes": actions["routes"],
        })
        .to_string();
        let config = Config::from_str(&text, &[], dir.path()).unwrap();
        let store = Store::open(&config.store, &config.dir_received)
            .await
            .unwrap();
        let dispatcher = Dispatcher::new(&config, store.clone()).unwrap();
        (dir, store, dispatcher)
    }

    fn problem(key: &str, severity: &str) -> Notification {
        Notification {
            source: Source::Dynatrace,
            problem_key: key.into(),
            state: "OPEN".into(),
            pid: None,
            title: Some("Checkout down".into()),
            is_test: false,
            body: format!("{{\"ProblemID\":\"{key}\"}}").into_bytes(),
            facts: Facts {
                severity: severity.into(),
                ..Facts::default()
            },
            identity: None,
            trace: None,
        }
    }

    /// `(problem, action, status)` of every run, oldest first.
    async fn runs(store: &Store, keys: &[&str]) -> Vec<(String, String, String)> {
        let mut all = Vec::new();
        for key in keys {
            for r in store.problem_runs(Source::Dynatrace, key).await.unwrap() {
                all.push((r.problem_key, r.action, r.status));
            }
        }
        all
    }

    #[tokio::test]
    async fn a_pass_routes_then_starts_the_most_urgent_run_first() {
        let (_dir, store, dispatcher) = setup(serde_json::json!({
            "actions": {"one": {"type": "script", "command": ["sleep", "30"], "max_concurrent": 1}},
            "routes": [{"actions": ["one"]}]
        }))
        .await;
        for (key, severity) in [
            ("P-1", "PERFORMANCE"),
            ("P-2", "AVAILABILITY"),
            ("P-3", "INFO"),
        ] {
            store.accept(problem(key, severity)).await.unwrap();
        }
        let mut tasks = JoinSet::new();
        // Routing and starting happen in one pass: three routed, one started (the one slot).
        dispatcher.step(&mut tasks).await.unwrap();
        let statuses = runs(&store, &["P-1", "P-2", "P-3"]).await;
        let running: Vec<&str> = statuses
            .iter()
            .filter(|(_, _, s)| s == "running")
            .map(|(k, _, _)| k.as_str())
            .collect();
        assert_eq!(statuses.len(), 3, "{statuses:?}");
        assert_eq!(running, ["P-2"], "the availability problem goes first");
        // The slot is taken: another pass starts nothing.
        assert_eq!(dispatcher.step(&mut tasks).await.unwrap(), 0);
        tasks.abort_all();
    }

    #[tokio::test]
    async fn a_saturated_action_leaves_another_actions_runs_to_start() {
        let (_dir, store, dispatcher) = setup(serde_json::json!({
            "actions": {
                "slow": {"type": "script", "command": ["sleep", "30"], "max_concurrent": 1},
                "page": {"type": "script", "command": ["sleep", "30"], "max_concurrent": 1}
            },
            "routes": [
                {"severities": ["PERFORMANCE"], "actions": ["slow"]},
                {"severities": ["AVAILABILITY"], "actions": ["page"]}
            ]
        }))
        .await;
        let mut keys = Vec::new();
        for i in 0..(BATCH as usize + 10) {
            keys.push(format!("N-{i}"));
        }
        for key in &keys {
            store.accept(problem(key, "PERFORMANCE")).await.unwrap();
        }
        let mut tasks = JoinSet::new();
        while dispatcher.step(&mut tasks).await.unwrap() > 0 {}
        // Behind more than a pass's worth of the slow action's runs, a page to another action.
        store
            .accept(problem("P-PAGE", "AVAILABILITY"))
            .await
            .unwrap();
        while dispatcher.step(&mut tasks).await.unwrap() > 0 {}
        assert_eq!(
            runs(&store, &["P-PAGE"]).await,
            [("P-PAGE".into(), "page".into(), "running".into())]
        );
        tasks.abort_all();
    }
}
