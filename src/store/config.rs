//! The store's part of the config: `store.url` and what goes with it, and the one place a store
//! URL is made fit to show.

use std::path::{Path, PathBuf};

use crate::keys::{Issues, Section};
use crate::secret::Secret;

/// The lease until `dispatch.lease_secs` says otherwise.
const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://USER@HOST:PORT/DB`, as it may be shown: a password in it
    /// is `***` here.
    pub url: String,
    /// The URL as given, password included (from the file or `HUB_STORE_URL`).
    pub connect_url: Secret,
    /// From `store.password_env`; wins over a password in the URL.
    pub password: Option<Secret>,
    /// `store.ca_file`: the CA certificates (PEM) a PostgreSQL server's certificate is checked
    /// against instead of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// This instance's name among those sharing a PostgreSQL store (`store.instance`, default the
    /// host name); shown on the page and in logs.
    pub instance: String,
    /// How long a claimed run is held for the instance running it before another may take it
    /// over (`dispatch.lease_secs`); renewed while the action runs.
    pub lease: std::time::Duration,
}

impl StoreConfig {
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.url)
    }

    /// The SQLite file the URL names; `None` for PostgreSQL or a URL that names no file.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let rest = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A store URL as it may be shown (check-config, the start line, the page, `/api/stats`): the
/// password in its user part and the value of any query key naming a password replaced by `***`.
///
/// This is the one place a store URL is made fit to show, and it must hold for a password of any
/// character, written raw as operators do (`pa/ss`, `p@ss`, `50%`). So it masks more than any
/// parser takes: the user part runs to the *last* `@` before the query (tokio-postgres stops at
/// the first, the WHATWG parser at the first `/`), and a password value runs to the next `&`
/// that starts a known option. A URL it cannot read loses more of itself, never the password.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL (`sqlite:hub.db`, or a libpq `key=value` string given by mistake).
        return if url.to_ascii_lowercase().contains("pass") {
            "(not shown: it may hold a password)".to_string()
        } else {
            url.to_string()
        };
    };
    match user_part(rest) {
        Some((colon, at)) => {
            // A `?` in the part taken for a password may have been the query's start (an `@` in
            // a query value): then what follows is the query's rest, and is masked as one.
            let after = &rest[at + 1..];
            let after = if rest[colon..at].contains('?') && !after.contains('?') {
                mask_query(&format!("?{after}"))[1..].to_string()
            } else {
                mask_query(after)
            };
            format!("{scheme}://{}:***@{after}", &rest[..colon])
        }
        None => format!("{scheme}://{}", mask_query(rest)),
    }
}

/// Where the `:` before a password and the `@` after it are in what follows `scheme://`.
fn user_part(rest: &str) -> Option<(usize, usize)> {
    let first_at = rest.find('@')?;
    let query = rest[first_at..]
        .find('?')
        .map_or(rest.len(), |q| first_at + q);
    let at = rest[..query].rfind('@')?;
    let colon = rest[..at].find(':')?;
    // A user name holds none of these; a `:` after one is a port, and the `@` is in the query.
    if rest[..colon].contains(['/', '?', '#']) {
        return None;
    }
    Some((colon, at))
}

/// The options tokio-postgres reads from a URL's query (and libpq's file options): a `&` starts
/// a new pair only before one of these, so a raw `&` in a password stays in the masked value.
const URL_OPTIONS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslpassword",
    "passfile",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// `s` with the value of every query pair whose key names a password (`password`, `sslpassword`,
/// percent-encoded or not) replaced by `***`.
fn mask_query(s: &str) -> String {
    let Some(q) = s.find('?') else {
        return s.to_string();
    };
    let (head, query) = s.split_at(q + 1);
    let mut pairs = Vec::new();
    let mut start = 0;
    for (i, _) in query.match_indices('&') {
        let starts_option = query[i + 1..]
            .split_once('=')
            .is_some_and(|(key, _)| URL_OPTIONS.contains(&percent_decoded(key).as_str()));
        if starts_option {
            pairs.push(&query[start..i]);
            start = i + 1;
        }
    }
    pairs.push(&query[start..]);
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if percent_decoded(key).to_ascii_lowercase().contains("pass") => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", pairs.join("&"))
}

/// A query key as tokio-postgres reads it (`pass%77ord` is `password`); bytes that do not decode
/// stay as they are.
fn percent_decoded(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The machine's host name, the default instance name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hub".to_string())
}

/// `store`: the URL (or `HUB_STORE_URL`), a password from the environment, a private CA, this
/// instance's name. The lease is `dispatch.lease_secs`, which the config sets once read.
pub(crate) fn read(
    mut s: Section,
    env: &[(String, String)],
    base: &Path,
    issues: &mut Issues,
) -> StoreConfig {
    let in_file = s.string("url", issues);
    let from_env = env
        .iter()
        .find(|(k, _)| k == "HUB_STORE_URL")
        .map(|(_, v)| v.clone());
    let url = from_env
        .or(in_file)
        .unwrap_or_else(|| "sqlite://hub.db".to_string());
    if is_postgres_url(&url) {
        let authority = url.split_once("://").map_or("", |(_, rest)| rest);
        if authority.split('/').nth(1).is_none_or(str::is_empty) {
            issues.push(
                s.path_of("url"),
                "name the database, such as postgres://hub@db.example:5432/hub",
            );
        }
    } else if !url.starts_with("sqlite:") {
        issues.push(
            s.path_of("url"),
            format!(
                "expected a SQLite URL such as sqlite://hub.db or a PostgreSQL one such as \
                 postgres://hub@db.example:5432/hub, found {:?}",
                without_password(&url)
            ),
        );
    } else if url.contains(":memory:") || url.contains("mode=memory") {
        issues.push(
            s.path_of("url"),
            "an in-memory store forgets every notification when hub stops; name a file, such as sqlite://hub.db",
        );
    }
    let password = match s.string("password_env", issues) {
        Some(var) => match env.iter().find(|(k, _)| *k == var) {
            Some((_, v)) if !v.is_empty() => Some(Secret::new(v.clone())),
            _ => {
                issues.push(
                    s.path_of("password_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        None => None,
    };
    let ca_file = s.string("ca_file", issues).map(|f| base.join(f));
    if let Some(f) = &ca_file {
        if !f.exists() {
            issues.push(
                s.path_of("ca_file"),
                format!("no such file: {}", f.display()),
            );
        } else if let Err(e) = crate::tls::ca_certificates(f) {
            // Read here with a cap, so a file that could never be a CA is refused at load.
            issues.push(s.path_of("ca_file"), e.to_string());
        }
    }
    let instance = s.string("instance", issues).unwrap_or_else(host_name);
    if instance.is_empty()
        || instance.len() > 64
        || !instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        issues.push(
            s.path_of("instance"),
            "letters, digits, '-', '_' and '.' only, 64 at most",
        );
    }
    s.finish(issues);
    StoreConfig {
        url: without_password(&url),
        connect_url: Secret::new(url),
        password,
        ca_file,
        instance,
        lease: DEFAULT_LEASE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password of any character, in the user part or the query, is never shown, and what is
    /// shown still names the host and database.
    #[test]
    fn a_store_urls_password_is_masked_whatever_it_holds() {
        let cases = [
            (
                "postgres://hub:pa/ss@db:5432/hub",
                "postgres://hub:***@db:5432/hub",
            ),
            ("postgres://hub:p@ss@db/hub", "postgres://hub:***@db/hub"),
            (
                "postgres://hub:p%40ss%2F@db/hub",
                "postgres://hub:***@db/hub",
            ),
            ("postgres://hub:pa?ss#x@db/hub", "postgres://hub:***@db/hub"),
            ("postgres://hub:@db/hub", "postgres://hub:***@db/hub"),
            (
                "postgres://hub@db/hub?password=SeCrEt",
                "postgres://hub@db/hub?password=***",
            ),
            (
                "postgres://db/hub?sslmode=require&password=a&b/c@d&application_name=x",
                "postgres://db/hub?sslmode=require&password=***&application_name=x",
            ),
            (
                "postgres://db/hub?pass%77ord=SeCrEt",
                "postgres://db/hub?pass%77ord=***",
            ),
            (
                "postgres://hub:one@db/hub?sslpassword=two",
                "postgres://hub:***@db/hub?sslpassword=***",
            ),
            ("sqlite://hub.db", "sqlite://hub.db"),
            ("sqlite:hub.db", "sqlite:hub.db"),
            ("host=db password=x", "(not shown: it may hold a password)"),
        ];
        for (url, shown) in cases {
            assert_eq!(without_password(url), shown, "{url}");
        }
        // Where the query holds an `@` and a `:` comes before it, more is hidden, nothing leaks.
        let odd = without_password("postgres://db:5432/hub?application_name=a@b&password=Z9");
        assert!(!odd.contains("Z9") && !odd.contains("5432/hub?"), "{odd}");
    }
}
