//! Retention rules: `keep last=3 daily=7 weekly=4 monthly=6` (GFS counts per period).

use std::fmt;

pub const KEYS: [&str; 6] = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Keep {
    pub fn set(&mut self, key: &str, n: u32) -> bool {
        let slot = match key {
            "last" => &mut self.last,
            "hourly" => &mut self.hourly,
            "daily" => &mut self.daily,
            "weekly" => &mut self.weekly,
            "monthly" => &mut self.monthly,
            "yearly" => &mut self.yearly,
            _ => return false,
        };
        *slot = n;
        true
    }

    pub fn keeps_nothing(&self) -> bool {
        *self == Keep::default()
    }

    /// The counts that keep something, by key.
    fn counts(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
    }

    /// The same rule as `restic forget` options (`--keep-daily=7` …).
    pub fn restic_args(&self) -> Vec<String> {
        self.counts()
            .map(|(k, n)| format!("--keep-{k}={n}"))
            .collect()
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.counts().map(|(k, n)| format!("{k}={n}")).collect();
        f.write_str(&parts.join(" "))
    }
}
