//! Time to page: how long from a monitoring system's POST to hub's webhook action reaching its
//! receiver. `bench/run` starts hub with a `webhook` action pointed at this program's receiver and
//! runs it; tests never do.
//!
//!     pace steady --hub URL --auth USER:PASS --listen ADDR --rate 1000 --seconds 10
//!     pace storm  --hub URL --auth USER:PASS --listen ADDR --alerts 10000 --slow ACTION
//!     pace fold   --hub URL --auth USER:PASS --listen ADDR --alerts 10000 --seconds 10 --groups 5
//!
//! `steady` sends Dynatrace notifications at a fixed rate (open loop: each one at its scheduled
//! time, whatever hub answers, so a queue that builds up shows in the figures instead of slowing
//! the sender down) and times each from its scheduled send to its receipt. `storm` first fills the
//! `--slow` action's queue with Alertmanager alerts, waits until hub has routed them all, then
//! sends one Dynatrace page a second and times those. `fold` sends `--alerts` Alertmanager alerts
//! over `--seconds`, their `alertname` one of `--groups`, to a route that groups by it, and counts
//! the group sends that reach the receiver: how many, the members the last of each carried, and
//! the time from the first alert to the first send. Prints one JSON line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What each problem id was sent at (scheduled) and received at.
#[derive(Default)]
struct Clock {
    sent: HashMap<u64, Instant>,
    received: HashMap<u64, Instant>,
    /// Each group send received: when, and its body.
    groups: Vec<(Instant, serde_json::Value)>,
}

type Shared = Arc<Mutex<Clock>>;

const MARKER: &[u8] = b"pace-";

#[derive(Clone)]
struct Args {
    mode: String,
    /// One hub or several (`URL,URL`): pages go to each in turn, as a load balancer sends them.
    hubs: Vec<String>,
    auth: (String, String),
    listen: SocketAddr,
    rate: u64,
    seconds: u64,
    alerts: u64,
    slow: String,
    pages: u64,
    groups: u64,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: pace steady|storm --hub URL …")?;
    let mut a = Args {
        mode,
        hubs: Vec::new(),
        auth: (String::new(), String::new()),
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        rate: 200,
        seconds: 10,
        alerts: 10_000,
        slow: "slow".into(),
        pages: 5,
        groups: 5,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--hub" => {
                a.hubs = value
                    .split(',')
                    .map(|h| h.trim_end_matches('/').to_string())
                    .collect()
            }
            "--auth" => {
                let (u, p) = value.split_once(':').ok_or("--auth USER:PASS")?;
                a.auth = (u.into(), p.into());
            }
            "--listen" => a.listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
            "--rate" => a.rate = number()?.max(1),
            "--seconds" => a.seconds = number()?,
            "--alerts" => a.alerts = number()?,
            "--slow" => a.slow = value,
            "--pages" => a.pages = number()?.max(1),
            "--groups" => a.groups = number()?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.hubs.is_empty() {
        return Err("--hub URL is required".into());
    }
    Ok(a)
}

/// The problem number a webhook body names (`pace-<n>`), if any.
fn marked(body: &[u8]) -> Option<u64> {
    let at = body.windows(MARKER.len()).position(|w| w == MARKER)? + MARKER.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

async fn receive(listener: tokio::net::TcpListener, clock: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let clock = clock.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let clock = clock.clone();
                async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let at = Instant::now();
                    if let Some(n) = marked(&body) {
                        let mut c = clock.lock().unwrap_or_else(|p| p.into_inner());
                        c.received.entry(n).or_insert(at);
                    } else if body.windows(7).any(|w| w == b"\"group-") {
                        let value = serde_json::from_slice(&body).unwrap_or_default();
                        let mut c = clock.lock().unwrap_or_else(|p| p.into_inner());
                        c.groups.push((at, value));
                    }
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn page_body(n: u64) -> String {
    format!(
        r#"{{"State":"OPEN","ProblemID":"pace-{n}","PID":"{n}_1606920000000V2","ProblemTitle":"Checkout unavailable","ProblemSeverity":"AVAILABILITY","ProblemImpact":"SERVICE","ImpactedEntities":[{{"type":"SERVICE","name":"checkout","entity":"SERVICE-1"}}],"Tags":"env:prod"}}"#
    )
}

/// Posts one page; its answer's status (0 when it did not arrive).
async fn send_page(client: &reqwest::Client, a: &Args, n: u64) -> u16 {
    client
        .post(format!("{}/", a.hubs[n as usize % a.hubs.len()]))
        .basic_auth(&a.auth.0, Some(&a.auth.1))
        .header("Content-Type", "application/json")
        .body(page_body(n))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits (up to `patience`) until every sent page arrived; then the latencies in ms, and how many
/// never arrived.
async fn collect(clock: &Shared, ids: &[u64], patience: Duration) -> (Vec<f64>, usize) {
    let deadline = Instant::now() + patience;
    loop {
        let done = {
            let c = clock.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter().all(|n| c.received.contains_key(n))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = clock.lock().unwrap_or_else(|p| p.into_inner());
    let mut ms: Vec<f64> = ids
        .iter()
        .filter_map(|n| {
            let (s, r) = (c.sent.get(n)?, c.received.get(n)?);
            Some(r.saturating_duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let lost = ids.len() - ms.len();
    (ms, lost)
}

fn figures(ms: &[f64], lost: usize, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "received": ms.len(), "lost": lost,
        "p50_ms": percentile(ms, 50.0), "p95_ms": percentile(ms, 95.0),
        "p99_ms": percentile(ms, 99.0), "max_ms": ms.last().copied().unwrap_or(f64::NAN),
    });
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

async fn steady(a: &Args, client: reqwest::Client, clock: Shared) -> serde_json::Value {
    let total = a.rate * a.seconds;
    let start = Instant::now() + Duration::from_millis(100);
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut sends = tokio::task::JoinSet::new();
    let mut ids = Vec::with_capacity(total as usize);
    for n in 0..total {
        let at = start + Duration::from_nanos(n * 1_000_000_000 / a.rate);
        tokio::time::sleep_until(at.into()).await;
        // From the scheduled time, not the actual one: a sender held up by a slow answer must
        // not hide the wait from the figures.
        clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sent
            .insert(n, at);
        ids.push(n);
        let (client, refused, a) = (client.clone(), refused.clone(), a.clone());
        sends.spawn(async move {
            if !(200..300).contains(&send_page(&client, &a, n).await) {
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        while sends.try_join_next().is_some() {}
    }
    let late = Instant::now().saturating_duration_since(start + Duration::from_secs(a.seconds));
    while sends.join_next().await.is_some() {}
    let (ms, lost) = collect(&clock, &ids, Duration::from_secs(30)).await;
    figures(
        &ms,
        lost,
        serde_json::json!({"mode": "steady", "rate": a.rate, "sent": total,
            "not_accepted": refused.load(std::sync::atomic::Ordering::Relaxed),
            "sender_late_ms": late.as_millis() as u64}),
    )
}

/// The sum of hub's `hub_action_runs` for one action: how many of its runs exist.
async fn runs_of(client: &reqwest::Client, a: &Args, action: &str) -> u64 {
    let Ok(r) = client
        .get(format!("{}/metrics", a.hubs[0]))
        .basic_auth(&a.auth.0, Some(&a.auth.1))
        .send()
        .await
    else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    let wanted = format!("hub_action_runs{{action=\"{action}\"");
    text.lines()
        .filter(|l| l.starts_with(&wanted))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn storm(a: &Args, client: reqwest::Client, clock: Shared) -> serde_json::Value {
    const PER_REQUEST: u64 = 100;
    let filled = Instant::now();
    let mut batch = 0;
    while batch * PER_REQUEST < a.alerts {
        let alerts: Vec<serde_json::Value> = (batch * PER_REQUEST
            ..((batch + 1) * PER_REQUEST).min(a.alerts))
            .map(|i| {
                serde_json::json!({
                    "status": "firing",
                    "labels": {"alertname": "NodeDown", "instance": format!("node-{i}:9100"),
                               "severity": "warning", "job": "node"},
                    "annotations": {"summary": format!("node-{i} is down")},
                    "startsAt": "2026-12-07T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph",
                    "fingerprint": format!("{i:016x}"),
                })
            })
            .collect();
        let body = serde_json::json!({
            "version": "4", "groupKey": format!("{{}}:{{batch=\"{batch}\"}}"),
            "truncatedAlerts": 0, "status": "firing", "receiver": "hub",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": alerts,
        });
        let sent = client
            .post(format!("{}/hooks/alertmanager", a.hubs[0]))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        if !sent.is_ok_and(|r| r.status().is_success()) {
            continue;
        }
        batch += 1;
    }
    // Every alert routed: the slow action's queue holds the storm.
    let deadline = Instant::now() + Duration::from_secs(300);
    while runs_of(&client, a, &a.slow).await < a.alerts && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let routed_s = filled.elapsed().as_secs_f64();
    let mut ids = Vec::new();
    for n in 0..a.pages {
        let id = 1_000_000_000 + n;
        clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sent
            .insert(id, Instant::now());
        ids.push(id);
        send_page(&client, a, id).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (ms, lost) = collect(&clock, &ids, Duration::from_secs(60)).await;
    figures(
        &ms,
        lost,
        serde_json::json!({"mode": "storm", "alerts": a.alerts, "pages": a.pages,
                           "storm_routed_s": routed_s}),
    )
}

/// The members a group send carried (the webhook action's body has the group beside the problem).
fn carried(body: &serde_json::Value) -> u64 {
    body["group"]["count"].as_u64().unwrap_or(0)
}

async fn fold(a: &Args, client: reqwest::Client, clock: Shared) -> serde_json::Value {
    const PER_REQUEST: u64 = 100;
    let requests = a.alerts.div_ceil(PER_REQUEST);
    let start = Instant::now() + Duration::from_millis(100);
    let mut refused = 0;
    for r in 0..requests {
        let at = start + Duration::from_nanos(r * a.seconds * 1_000_000_000 / requests.max(1));
        tokio::time::sleep_until(at.into()).await;
        let alerts: Vec<serde_json::Value> = (r * PER_REQUEST
            ..((r + 1) * PER_REQUEST).min(a.alerts))
            .map(|i| {
                serde_json::json!({
                    "status": "firing",
                    "labels": {"alertname": format!("Fold{}", i % a.groups),
                               "instance": format!("node-{i}:9100"), "severity": "critical"},
                    "annotations": {"summary": format!("node-{i} is down")},
                    "startsAt": "2026-12-07T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph",
                    "fingerprint": format!("f{i:015x}"),
                })
            })
            .collect();
        let body = serde_json::json!({
            "version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "hub", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": alerts,
        });
        let ok = client
            .post(format!("{}/hooks/alertmanager", a.hubs[0]))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            refused += 1;
        }
    }
    let stormed_s = start.elapsed().as_secs_f64();
    // Until every group's last send has carried every member of it (or a minute has gone by).
    let per_group = a.alerts / a.groups;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let c = clock.lock().unwrap_or_else(|p| p.into_inner());
            let mut last: HashMap<String, u64> = HashMap::new();
            for (_, b) in &c.groups {
                let id = b["group"]["id"].to_string();
                last.insert(id, carried(b));
            }
            last.len() as u64 == a.groups && last.values().all(|n| *n >= per_group)
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = clock.lock().unwrap_or_else(|p| p.into_inner());
    let first_ms = c
        .groups
        .iter()
        .map(|(at, _)| at.saturating_duration_since(start).as_secs_f64() * 1000.0)
        .fold(f64::NAN, f64::min);
    let last_ms = c
        .groups
        .iter()
        .map(|(at, _)| at.saturating_duration_since(start).as_secs_f64() * 1000.0)
        .fold(f64::NAN, f64::max);
    let carried_last: u64 = {
        let mut last: HashMap<String, u64> = HashMap::new();
        for (_, b) in &c.groups {
            let id = b["group"]["id"].to_string();
            last.insert(id, carried(b));
        }
        last.values().sum()
    };
    serde_json::json!({
        "mode": "fold", "alerts": a.alerts, "seconds": a.seconds, "groups": a.groups,
        "requests_not_accepted": refused, "sent_in_s": stormed_s,
        "sends": c.groups.len(), "members_in_last_sends": carried_last,
        "first_send_ms": first_ms, "last_send_ms": last_ms,
    })
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pace: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(a.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pace: cannot listen on {}: {e}", a.listen);
            std::process::exit(1);
        }
    };
    let clock: Shared = Arc::default();
    tokio::spawn(receive(listener, clock.clone()));
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pace: {e}");
            std::process::exit(1);
        }
    };
    let result = match a.mode.as_str() {
        "steady" => steady(&a, client, clock).await,
        "storm" => storm(&a, client, clock).await,
        "fold" => fold(&a, client, clock).await,
        other => {
            eprintln!("pace: unknown mode {other} (steady, storm or fold)");
            std::process::exit(2);
        }
    };
    println!("{result}");
}
