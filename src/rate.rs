//! A sliding one-minute window of events: how an action, a recipient or a sender is kept within
//! so many a minute.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Window {
    per_minute: usize,
    /// When each event of the last minute happened, oldest first.
    times: VecDeque<Instant>,
}

impl Window {
    pub fn new(per_minute: u32) -> Window {
        Window {
            per_minute: per_minute as usize,
            times: VecDeque::new(),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute as u32
    }

    /// Counts an event now if the last minute has room for it; otherwise says how long until it
    /// has.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            self.times.pop_front();
        }
        if self.times.len() >= self.per_minute {
            let oldest = self.times.front().copied().unwrap_or(now);
            return Err(MINUTE.saturating_sub(now.duration_since(oldest)));
        }
        self.times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_minute_says_when_it_has_room_again() {
        let start = Instant::now();
        let mut w = Window::new(2);
        assert!(w.take(start).is_ok());
        assert!(w.take(start + Duration::from_secs(10)).is_ok());
        let wait = w.take(start + Duration::from_secs(20)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(
            w.take(start + MINUTE).is_ok(),
            "the first one has left the window"
        );
    }
}
