//! The one retry policy, for every call hub makes and every action it runs: what is worth trying
//! again, how long to wait before the next try, and how long a server asked hub to wait.
//!
//! Transient: a connection error, a timeout, HTTP 408, 425, 429 or any 5xx, and a script's exit 75
//! (`EX_TEMPFAIL`). Everything else is permanent: trying again would fail the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// The exit code a script uses to ask for another try (`EX_TEMPFAIL` from `sysexits.h`).
pub const TRANSIENT_EXIT: i32 = 75;

/// Whether an HTTP answer with this status is worth trying again: Request Timeout, Too Early, Too
/// Many Requests, and every server error.
pub fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// The wait before the next try: `first` doubling with each earlier attempt up to `max`, then a
/// random part of up to half taken off, so a crowd of retries spreads out instead of arriving
/// together.
pub fn backoff(first: Duration, max: Duration, earlier_attempts: u32) -> Duration {
    let doubled = first.saturating_mul(1u32 << earlier_attempts.min(30));
    let capped = doubled.min(max).max(Duration::from_millis(1));
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// How long the server asked hub to wait, if it did: `Retry-After` (seconds, or an HTTP date), or
/// `X-RateLimit-Reset`, read as the moment the limit resets (Dynatrace sends microseconds since
/// the epoch; others send milliseconds or seconds since it) or, when it is too small to be a
/// moment, as seconds from now. The caller caps it.
pub fn server_wait(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(value) = text("retry-after") {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    let reset: u64 = text("x-ratelimit-reset")?.parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let at = match reset {
        r if r >= 1_000_000_000_000_000 => Duration::from_micros(r),
        r if r >= 1_000_000_000_000 => Duration::from_millis(r),
        r if r >= 1_000_000_000 => Duration::from_secs(r),
        r => return Some(Duration::from_secs(r)),
    };
    Some(at.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn transient_statuses_are_the_documented_ones() {
        let transient: Vec<u16> = (100..600).filter(|s| transient_status(*s)).collect();
        let mut expected = vec![408, 425, 429];
        expected.extend(500..600);
        assert_eq!(transient, expected);
    }

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(300));
        for attempts in 0..40 {
            let d = backoff(first, max, attempts);
            let cap = (first * (1 << attempts.min(30))).min(max);
            assert!(d >= cap / 2 && d <= cap, "{attempts}: {d:?}");
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn servers_are_understood_in_each_of_their_forms() {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64().round() as u64);
        assert_eq!(
            secs(server_wait(&headers(&[("retry-after", "7".into())]))),
            Some(7)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let asked = secs(server_wait(&headers(&[("retry-after", later)]))).unwrap();
        assert!((28..=30).contains(&asked), "{asked}");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        for reset in [
            (now + Duration::from_secs(20)).as_micros().to_string(),
            (now + Duration::from_secs(20)).as_millis().to_string(),
            (now + Duration::from_secs(20)).as_secs().to_string(),
            "20".to_string(),
        ] {
            let asked = secs(server_wait(&headers(&[(
                "x-ratelimit-reset",
                reset.clone(),
            )])));
            assert!(matches!(asked, Some(19..=20)), "{reset}: {asked:?}");
        }
        let past = (now - Duration::from_secs(5)).as_micros().to_string();
        assert_eq!(
            server_wait(&headers(&[("x-ratelimit-reset", past)])),
            Some(Duration::ZERO)
        );
        assert_eq!(
            server_wait(&headers(&[("retry-after", "soon".into())])),
            None
        );
        assert_eq!(server_wait(&HeaderMap::new()), None);
    }
}
