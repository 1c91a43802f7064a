//! Login rate limiting: a sliding window per user name and per client address. argon2 costs tens of
//! milliseconds of CPU per attempt; on a 2-core server unlimited attempts would be a denial-of-service lever
//! as well as a password-guessing one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Default login attempts per user name within [`WINDOW`] (`auth.login_attempts_per_user`).
pub const PER_USER: u32 = 5;
/// Default login attempts per client address within [`WINDOW`] (`auth.login_attempts_per_address`).
pub const PER_ADDRESS: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Counts attempts per key in a sliding window.
#[derive(Debug)]
pub struct LoginLimiter {
    users: HashMap<String, Vec<Instant>>,
    addresses: HashMap<IpAddr, Vec<Instant>>,
    per_user: u32,
    per_address: u32,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(PER_USER, PER_ADDRESS)
    }
}

fn admit(list: &mut Vec<Instant>, limit: u32, now: Instant) -> Result<(), Duration> {
    list.retain(|t| now.duration_since(*t) < WINDOW);
    if list.len() as u32 >= limit {
        let oldest = list.first().copied().unwrap_or(now);
        return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
    }
    list.push(now);
    Ok(())
}

impl LoginLimiter {
    /// A limiter allowing `per_user` attempts per user name and `per_address` per address per window.
    pub fn new(per_user: u32, per_address: u32) -> Self {
        Self {
            users: HashMap::new(),
            addresses: HashMap::new(),
            per_user: per_user.max(1),
            per_address: per_address.max(1),
        }
    }

    /// Records an attempt; `Err(wait)` when the user or the address is over its limit.
    pub fn attempt(
        &mut self,
        user: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        if let Some(a) = addr {
            admit(self.addresses.entry(a).or_default(), self.per_address, now)?;
        }
        admit(
            self.users.entry(user.to_string()).or_default(),
            self.per_user,
            now,
        )?;
        if self.users.len() > 100_000 {
            self.users.retain(|_, v| !v.is_empty());
        }
        Ok(())
    }

    /// A successful login clears the user's count.
    pub fn succeeded(&mut self, user: &str) {
        self.users.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_per_address_in_a_sliding_window() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_USER {
            assert!(l.attempt("alice", Some(ip), t0).is_ok());
        }
        assert!(l.attempt("alice", Some(ip), t0).is_err());
        // Another user from the same address is still allowed, up to the address limit.
        assert!(l.attempt("bob", Some(ip), t0).is_ok());
        // After the window the user may try again.
        assert!(l
            .attempt("alice", Some(ip), t0 + WINDOW + Duration::from_secs(1))
            .is_ok());
        let mut l = LoginLimiter::default();
        for i in 0..PER_ADDRESS {
            assert!(l.attempt(&format!("u{i}"), Some(ip), t0).is_ok());
        }
        assert!(l.attempt("fresh", Some(ip), t0).is_err());
        l.succeeded("u0");
    }
}
