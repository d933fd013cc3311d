//! Exponential backoff for reconnecting to the broker and retrying the database.

use std::time::Duration;

/// Exponential backoff from 100 ms to 5 s, so a broker restart is noticed quickly without
/// hammering a broker that stays down.
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// A backoff at its first, shortest delay.
    pub fn new() -> Self {
        Backoff { delay: Self::FIRST }
    }

    /// The delay to wait now; the next one is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        delay
    }

    /// Starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.delay = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}
