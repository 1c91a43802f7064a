//! Restart intensity: at most `max_restarts` restarts within `period`; above that the supervisor escalates.
//!
//! shotline uses its own small supervision module instead of `ractor-supervisor`: the strategies it needs
//! (one_for_one at the root, one_for_all per backend, temporary children at the gateway) are a few lines on
//! top of ractor's supervision events, and keeping them here keeps the restart policy testable in isolation.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restart policy of a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

/// Counts restarts in a sliding window.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker for `policy`.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; false when it exceeds the intensity (the supervisor must escalate).
    pub fn allow(&mut self, now: Instant) -> bool {
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) > self.policy.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.recent.len() as u32 <= self.policy.max_restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalates_above_the_intensity_and_forgets_old_restarts() {
        let mut t = RestartTracker::new(RestartPolicy {
            max_restarts: 3,
            period: Duration::from_secs(5),
        });
        let t0 = Instant::now();
        assert!(t.allow(t0));
        assert!(t.allow(t0 + Duration::from_secs(1)));
        assert!(t.allow(t0 + Duration::from_secs(2)));
        assert!(!t.allow(t0 + Duration::from_secs(3)));
        // Seven seconds later the window has emptied of the first restarts.
        assert!(t.allow(t0 + Duration::from_secs(10)));
    }
}
