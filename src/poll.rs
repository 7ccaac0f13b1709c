//! `hub poll` and `hub problem`: Dynatrace's view, next to what hub received.

use anyhow::Context;

use crate::dynatrace::problem::Summary;
use crate::dynatrace::{Client, Window};
use crate::feed::{utc, Feed, Received};
use crate::store;

pub async fn poll(
    client: Client,
    store_url: String,
    window: Window,
    json: bool,
) -> anyhow::Result<String> {
    let problems = client
        .feed(window)
        .await
        .context("cannot read the problem feed")?;
    let received = match store::open_reader(&store_url).await? {
        Some(pool) => store::received(&pool).await?,
        None => Received::default(),
    };
    let summaries = problems
        .iter()
        .map(|p| Summary::from_api(client.version(), p))
        .collect();
    let feed = Feed::new(window, summaries, &received);
    Ok(if json {
        feed.to_json().to_string()
    } else {
        feed.to_table()
    })
}

pub async fn problem(client: Client, pid: String, json: bool) -> anyhow::Result<String> {
    let details = client
        .problem(&pid)
        .await
        .with_context(|| format!("cannot read problem {pid}"))?;
    if json {
        return Ok(details.to_string());
    }
    let s = Summary::from_api(client.version(), &details);
    let field = |name: &str, value: &str| format!("{name:<10} {value}");
    let lines = [
        field("problem", &format!("{} ({})", s.display_id, s.pid)),
        field("title", &s.title),
        field("status", &s.status),
        field("severity", &s.severity),
        field("impact", &s.impact),
        field("start", &s.start_ms.map(utc).unwrap_or_else(|| "-".into())),
        field(
            "end",
            &s.end_ms.map(utc).unwrap_or_else(|| "still open".into()),
        ),
        field("entities", &s.entities.join(", ")),
    ];
    Ok(lines.join("\n"))
}
