//! Rate limiting of login and self-registration: sliding windows per user name and per client address. argon2
//! costs tens of milliseconds of CPU per attempt; on a 2-core server unlimited attempts would be a
//! denial-of-service lever as well as a password-guessing one.
//!
//! Memory is bounded: each key costs a fixed-size counter (12 slots of a twelfth of the window, so the window
//! slides in steps of 5 s for logins), whatever the configured limits; user names are at most
//! [`crate::auth::MAX_USER_NAME_LEN`] bytes (checked before they get here); a table keeps at most
//! [`MAX_TRACKED`] keys. A full table first forgets keys whose window has passed; if it is still full, keys
//! it does not know share one overflow counter with the same limit (new names or addresses are then limited
//! together, never let through unlimited), and no live counter is ever evicted, so flooding the table cannot
//! reset anyone's count.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Default login attempts per user name within [`WINDOW`] (`auth.login_attempts_per_user`).
pub const PER_USER: u32 = 5;
/// Default login attempts per client address within [`WINDOW`] (`auth.login_attempts_per_address`).
pub const PER_ADDRESS: u32 = 20;
/// Default registrations per client address within [`REGISTRATION_WINDOW`] (`auth.registrations_per_address`).
pub const REGISTRATIONS_PER_ADDRESS: u32 = 5;
/// The login window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The registration window.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);
/// Keys (user names, addresses) one table tracks at most.
pub const MAX_TRACKED: usize = 10_000;

const SLOTS: usize = 12;

/// Attempts of one key in the last [`SLOTS`] slots.
#[derive(Debug, Clone, Default)]
struct Counter {
    /// Slot index of the latest update.
    last: u64,
    counts: [u32; SLOTS],
}

impl Counter {
    fn advance(&mut self, now: u64) {
        if now >= self.last + SLOTS as u64 {
            self.counts = [0; SLOTS];
        } else {
            for s in self.last + 1..=now {
                self.counts[(s % SLOTS as u64) as usize] = 0;
            }
        }
        self.last = self.last.max(now);
    }

    fn expired(&self, now: u64) -> bool {
        now >= self.last + SLOTS as u64 || self.counts.iter().all(|c| *c == 0)
    }

    /// Counts an attempt in slot `now`, or returns after how many slots it would be allowed.
    fn admit(&mut self, now: u64, limit: u32) -> Result<(), u64> {
        self.advance(now);
        let total: u64 = self.counts.iter().map(|c| u64::from(*c)).sum();
        if total >= u64::from(limit) {
            // The oldest slots leave the window first: wait until enough of them have.
            let mut excess = total + 1 - u64::from(limit);
            let oldest = (now + 1).saturating_sub(SLOTS as u64);
            for s in oldest..=now {
                let c = u64::from(self.counts[(s % SLOTS as u64) as usize]);
                if c >= excess {
                    return Err(s + SLOTS as u64 - now);
                }
                excess -= c;
            }
            return Err(SLOTS as u64);
        }
        let slot = &mut self.counts[(now % SLOTS as u64) as usize];
        *slot = slot.saturating_add(1);
        Ok(())
    }
}

/// A sliding window per key with a bounded table.
#[derive(Debug)]
struct Window<K> {
    map: HashMap<K, Counter>,
    overflow: Counter,
    limit: u32,
    slot: Duration,
    epoch: Instant,
    last_sweep: Option<u64>,
    max: usize,
}

impl<K: Hash + Eq> Window<K> {
    fn new(limit: u32, window: Duration, epoch: Instant, max: usize) -> Self {
        Self {
            map: HashMap::new(),
            overflow: Counter::default(),
            limit: limit.max(1),
            slot: window / SLOTS as u32,
            epoch,
            last_sweep: None,
            max,
        }
    }

    fn slot_of(&self, now: Instant) -> u64 {
        let nanos = self.slot.as_nanos().max(1);
        (now.saturating_duration_since(self.epoch).as_nanos() / nanos) as u64
    }

    fn wait(&self, slots: u64, now: Instant) -> Duration {
        let at = self.epoch + self.slot * (self.slot_of(now) + slots) as u32;
        at.saturating_duration_since(now)
    }

    /// Counts an attempt for `key`, or returns how long to wait.
    fn admit<Q>(&mut self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let s = self.slot_of(now);
        let limit = self.limit;
        if let Some(c) = self.map.get_mut(key) {
            return c.admit(s, limit).map_err(|n| self.wait(n, now));
        }
        if self.map.len() >= self.max && self.last_sweep != Some(s) {
            self.last_sweep = Some(s);
            self.map.retain(|_, c| !c.expired(s));
        }
        if self.map.len() >= self.max {
            return self.overflow.admit(s, limit).map_err(|n| self.wait(n, now));
        }
        let mut c = Counter {
            last: s,
            ..Counter::default()
        };
        let r = c.admit(s, limit);
        self.map.insert(key.to_owned(), c);
        r.map_err(|n| self.wait(n, now))
    }

    fn forget<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Counts login attempts per user name and per address, and registrations per address.
#[derive(Debug)]
pub struct LoginLimiter {
    users: Window<String>,
    addresses: Window<IpAddr>,
    registrations: Window<IpAddr>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(PER_USER, PER_ADDRESS)
    }
}

impl LoginLimiter {
    /// A limiter allowing `per_user` attempts per user name and `per_address` per address per window, and
    /// [`REGISTRATIONS_PER_ADDRESS`] registrations per address per [`REGISTRATION_WINDOW`].
    pub fn new(per_user: u32, per_address: u32) -> Self {
        Self::with_max(per_user, per_address, MAX_TRACKED)
    }

    /// The same with at most `max` keys per table.
    pub fn with_max(per_user: u32, per_address: u32, max: usize) -> Self {
        let epoch = Instant::now();
        Self {
            users: Window::new(per_user, WINDOW, epoch, max),
            addresses: Window::new(per_address, WINDOW, epoch, max),
            registrations: Window::new(REGISTRATIONS_PER_ADDRESS, REGISTRATION_WINDOW, epoch, max),
        }
    }

    /// Sets the registrations allowed per address per [`REGISTRATION_WINDOW`].
    pub fn with_registrations(mut self, per_address: u32) -> Self {
        let (epoch, max) = (self.registrations.epoch, self.registrations.max);
        self.registrations = Window::new(per_address, REGISTRATION_WINDOW, epoch, max);
        self
    }

    /// Records a login attempt; `Err(wait)` when the user or the address is over its limit.
    pub fn attempt(
        &mut self,
        user: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        if let Some(a) = addr {
            self.addresses.admit(&a, now)?;
        }
        self.users.admit(user, now)
    }

    /// Records a registration attempt from `addr`; `Err(wait)` when the address is over its limit.
    pub fn register_attempt(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.registrations.admit(&addr, now)
    }

    /// Registrations allowed per address per [`REGISTRATION_WINDOW`].
    pub fn registrations_limit(&self) -> u32 {
        self.registrations.limit
    }

    /// A successful login clears the user's count.
    pub fn succeeded(&mut self, user: &str) {
        self.users.forget(user);
    }

    /// Keys tracked: (user names, login addresses, registration addresses).
    pub fn tracked(&self) -> (usize, usize, usize) {
        (
            self.users.len(),
            self.addresses.len(),
            self.registrations.len(),
        )
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

    #[test]
    fn the_wait_says_when_the_oldest_attempts_leave_the_window() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_USER {
            assert!(l
                .attempt("alice", None, t0 + Duration::from_secs(10 * u64::from(i)))
                .is_ok());
        }
        let now = t0 + Duration::from_secs(45);
        let wait = l.attempt("alice", None, now).unwrap_err();
        // The attempt at t0 leaves the window after 55..=60 s: in 10..=15 s from now.
        assert!(
            wait >= Duration::from_secs(9) && wait <= Duration::from_secs(16),
            "{wait:?}"
        );
        assert!(l.attempt("alice", None, now + wait).is_ok());
    }

    #[test]
    fn the_tables_are_bounded_expire_and_never_evict_a_live_count() {
        let mut l = LoginLimiter::with_max(PER_USER, 1_000_000, 100);
        let t0 = Instant::now();
        for _ in 0..PER_USER {
            l.attempt("victim", None, t0).unwrap();
        }
        assert!(l.attempt("victim", None, t0).is_err());
        // A flood of other names fills the table; the victim's count survives it.
        for i in 0..1000 {
            let _ = l.attempt(&format!("flood{i}"), None, t0);
        }
        assert!(l.tracked().0 <= 100, "{:?}", l.tracked());
        assert!(l.attempt("victim", None, t0).is_err());
        // Names the full table cannot track share one counter: they are limited together.
        assert!(l.attempt("newcomer", None, t0).is_err());
        // Once the window has passed, expired entries make room again.
        let later = t0 + WINDOW + Duration::from_secs(6);
        assert!(l.attempt("newcomer", None, later).is_ok());
        assert!(l.tracked().0 <= 2, "{:?}", l.tracked());
        assert!(l.attempt("victim", None, later).is_ok());
    }

    #[test]
    fn registrations_are_limited_per_address_per_hour() {
        let mut l = LoginLimiter::default().with_registrations(2);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.register_attempt(a, t0).is_ok());
        assert!(l.register_attempt(a, t0).is_ok());
        let wait = l.register_attempt(a, t0).unwrap_err();
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(l.register_attempt(b, t0).is_ok());
        assert!(l
            .register_attempt(a, t0 + REGISTRATION_WINDOW + Duration::from_secs(1))
            .is_ok());
    }
}
