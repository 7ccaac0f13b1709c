//! The feed's time windows: the sample's six buttons plus `3days`.

/// A window back from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Hour,
    TwoHours,
    SixHours,
    Day,
    ThreeDays,
    Week,
    Month,
}

impl Window {
    pub const ALL: [Window; 7] = [
        Window::Hour,
        Window::TwoHours,
        Window::SixHours,
        Window::Day,
        Window::ThreeDays,
        Window::Week,
        Window::Month,
    ];

    /// The name in URLs and on the command line; also v1's `relativeTime` value.
    pub fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::TwoHours => "2hours",
            Window::SixHours => "6hours",
            Window::Day => "day",
            Window::ThreeDays => "3days",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// v2's `from` value.
    pub fn v2_from(self) -> &'static str {
        match self {
            Window::Hour => "now-1h",
            Window::TwoHours => "now-2h",
            Window::SixHours => "now-6h",
            Window::Day => "now-1d",
            Window::ThreeDays => "now-3d",
            Window::Week => "now-1w",
            Window::Month => "now-1M",
        }
    }

    /// The valid names, for error messages.
    pub fn names() -> String {
        Window::ALL.map(Window::name).join(", ")
    }
}

/// A window name that is not one of [`Window::ALL`]; the name itself is not repeated.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown window; valid windows: {}", Window::names())]
pub struct UnknownWindow;

impl std::str::FromStr for Window {
    type Err = UnknownWindow;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or(UnknownWindow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_window_round_trips_and_maps_for_both_versions() {
        for w in Window::ALL {
            assert_eq!(w.name().parse::<Window>().unwrap(), w);
            assert!(w.v2_from().starts_with("now-"));
        }
        assert_eq!(Window::ThreeDays.v2_from(), "now-3d");
        assert_eq!(Window::Month.v2_from(), "now-1M");
        let err = "fortnight".parse::<Window>().unwrap_err().to_string();
        assert!(
            err.contains("hour, 2hours, 6hours, day, 3days, week, month"),
            "{err}"
        );
        assert!("<script>".parse::<Window>().is_err());
    }
}
