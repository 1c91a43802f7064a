//! Time on the shot path: integer nanoseconds on the monotonic clock, absolute-deadline waits.
//!
//! Reading the clock is a vDSO call (no syscall); waiting sleeps with `clock_nanosleep(TIMER_ABSTIME)` until
//! `margin` before the deadline and spins for the rest. [`SimulatedTimer`] replaces the real clock in
//! deterministic tests: it jumps straight to each deadline plus an injected lateness.

/// Nanoseconds on the monotonic clock (or relative to a shot start, by context).
pub type Nanos = u64;

/// Current time of `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Sleeps until the monotonic clock reaches `deadline` (absolute), retrying on signals.
pub fn sleep_until_ns(deadline: Nanos) {
    let ts = libc::timespec {
        tv_sec: (deadline / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: valid timespec, null remainder is allowed with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Longest single sleep of a cancellable wait: a far deadline (a long lead or cycle) is slept in pieces of
/// at most this, so an abort or a shutdown is noticed within it instead of at the deadline.
pub const WAIT_CHUNK_NS: Nanos = 10_000_000;

/// How the shot clock waits for a deadline. `wait_until` returns the time at which the wait ended; the
/// shot clock checks it against the deadline before applying an event, and stamps the event's lateness
/// with [`ShotTimer::now`] once the device call has returned.
pub trait ShotTimer: Send {
    /// Current time in nanoseconds.
    fn now(&mut self) -> Nanos;
    /// Waits until `deadline` and returns the time the wait ended (never earlier than `deadline`).
    fn wait_until(&mut self, deadline: Nanos) -> Nanos;
    /// Like [`ShotTimer::wait_until`], but a long wait gives up (`None`) once `cancelled()` says so: a real
    /// timer sleeps a deadline further than its margin plus [`WAIT_CHUNK_NS`] in pieces and checks between
    /// them (short waits, the normal case, never check). The default (simulated time, which never really
    /// waits) never gives up.
    fn wait_until_or(&mut self, deadline: Nanos, cancelled: &dyn Fn() -> bool) -> Option<Nanos> {
        let _ = cancelled;
        Some(self.wait_until(deadline))
    }
    /// Like [`ShotTimer::wait_until`] but never sleeps (a real timer spins the whole wait, so the deadline
    /// does not depend on a wake-up); used inside a shot by a real-time clock on a reserved core. The
    /// default (simulated time) is `wait_until`.
    fn spin_until(&mut self, deadline: Nanos) -> Nanos {
        self.wait_until(deadline)
    }
    /// Gives the CPU away for about `ns` (between shots, never inside one): a real timer sleeps, and how
    /// late it wakes does not matter because no deadline has been fixed yet. The default (simulated time)
    /// does nothing, so simulated runs stay exact.
    fn rest(&mut self, ns: Nanos) {
        let _ = ns;
    }
    /// Called once on the shot clock's own thread before its first run (a real timer opens what it reads
    /// there, so that nothing is allocated or opened on the shot path).
    fn on_clock_thread(&mut self) {}
    /// Time the clock's thread has so far spent runnable but waiting for a CPU (its scheduler run delay),
    /// in ns: the clock reads it before and after a spun-through shot and backs off from spinning when
    /// other threads kept it off the CPU. The default (simulated time) is never kept waiting.
    fn run_delay_ns(&mut self) -> u64 {
        0
    }
}

/// The real clock: sleep until `margin_ns` before the deadline, then spin on the vDSO clock.
#[derive(Debug, Clone)]
pub struct MonotonicTimer {
    margin_ns: Nanos,
    /// The clock thread's `/proc/thread-self/schedstat`, opened on that thread ([`ShotTimer::on_clock_thread`]).
    schedstat: Option<std::sync::Arc<std::fs::File>>,
}

impl MonotonicTimer {
    /// A timer that sleeps until `margin_ns` before each deadline and spins the rest.
    pub fn new(margin_ns: Nanos) -> Self {
        Self {
            margin_ns,
            schedstat: None,
        }
    }
}

impl ShotTimer for MonotonicTimer {
    fn now(&mut self) -> Nanos {
        monotonic_ns()
    }

    fn wait_until(&mut self, deadline: Nanos) -> Nanos {
        let now = monotonic_ns();
        self.wait_from(now, deadline)
    }

    fn wait_until_or(&mut self, deadline: Nanos, cancelled: &dyn Fn() -> bool) -> Option<Nanos> {
        let mut now = monotonic_ns();
        // Far deadlines are slept in pieces, checking for cancellation in between; the last piece (and
        // every ordinary wait, shorter than a chunk) costs nothing extra and is never cancelled.
        while deadline.saturating_sub(now) > self.margin_ns.saturating_add(WAIT_CHUNK_NS) {
            if cancelled() {
                return None;
            }
            sleep_until_ns(now + WAIT_CHUNK_NS);
            now = monotonic_ns();
        }
        Some(self.wait_from(now, deadline))
    }

    fn spin_until(&mut self, deadline: Nanos) -> Nanos {
        loop {
            let now = monotonic_ns();
            if now >= deadline {
                return now;
            }
            std::hint::spin_loop();
        }
    }

    fn rest(&mut self, ns: Nanos) {
        if ns > 0 {
            sleep_until_ns(monotonic_ns().saturating_add(ns));
        }
    }

    fn on_clock_thread(&mut self) {
        // thread-self resolves to the calling thread when opened; the descriptor keeps pointing at it.
        self.schedstat = std::fs::File::open("/proc/thread-self/schedstat")
            .ok()
            .map(std::sync::Arc::new);
    }

    fn run_delay_ns(&mut self) -> u64 {
        self.schedstat.as_deref().map_or(0, read_run_delay_ns)
    }
}

/// The second field of a `schedstat` file (run delay, ns), read with one `pread` into a stack buffer (no
/// allocation); 0 if unreadable.
fn read_run_delay_ns(file: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 96];
    let Ok(n) = file.read_at(&mut buf, 0) else {
        return 0;
    };
    let text = buf.get(..n).unwrap_or_default();
    let mut fields = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let field = fields.nth(1).unwrap_or_default();
    let mut value: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return 0;
        }
        value = value.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    value
}

impl MonotonicTimer {
    /// Waits from `now` (just read) until `deadline`: sleep until the margin, then spin.
    #[inline]
    fn wait_from(&self, mut now: Nanos, deadline: Nanos) -> Nanos {
        if now >= deadline {
            return now;
        }
        if deadline - now > self.margin_ns {
            sleep_until_ns(deadline - self.margin_ns);
        }
        loop {
            now = monotonic_ns();
            if now >= deadline {
                return now;
            }
            std::hint::spin_loop();
        }
    }
}

/// A deterministic clock for tests: time only moves when the shot clock waits. Each wait lands exactly on
/// its deadline plus the lateness injected for that wait (by wait index), so tests can make chosen events late.
#[derive(Debug, Clone, Default)]
pub struct SimulatedTimer {
    now: Nanos,
    waits: u64,
    late: Vec<(u64, Nanos)>,
}

impl SimulatedTimer {
    /// A simulated clock starting at `start`.
    pub fn new(start: Nanos) -> Self {
        Self {
            now: start,
            waits: 0,
            late: Vec::new(),
        }
    }

    /// Makes the `wait_index`-th wait (0-based, counted over the timer's life) end `lateness_ns` late.
    pub fn inject_lateness(mut self, wait_index: u64, lateness_ns: Nanos) -> Self {
        self.late.push((wait_index, lateness_ns));
        self
    }
}

impl ShotTimer for SimulatedTimer {
    fn now(&mut self) -> Nanos {
        self.now
    }

    fn wait_until(&mut self, deadline: Nanos) -> Nanos {
        let extra = self
            .late
            .iter()
            .find(|(i, _)| *i == self.waits)
            .map(|(_, l)| *l)
            .unwrap_or(0);
        self.waits += 1;
        self.now = self.now.max(deadline) + extra;
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_timer_reads_its_threads_run_delay_after_opening_it_on_that_thread() {
        std::thread::spawn(|| {
            let mut t = MonotonicTimer::new(50_000);
            assert_eq!(
                t.run_delay_ns(),
                0,
                "nothing is read before on_clock_thread"
            );
            t.on_clock_thread();
            if std::path::Path::new("/proc/thread-self/schedstat").exists() {
                let a = t.run_delay_ns();
                for _ in 0..1000 {
                    std::thread::yield_now();
                }
                let b = t.run_delay_ns();
                assert!(b >= a, "run delay is cumulative: {a} then {b}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn monotonic_wait_never_returns_early() {
        let mut t = MonotonicTimer::new(50_000);
        let deadline = monotonic_ns() + 300_000;
        let got = t.wait_until(deadline);
        assert!(got >= deadline);
    }

    #[test]
    fn a_far_wait_gives_up_soon_after_it_is_cancelled() {
        let mut t = MonotonicTimer::new(50_000);
        let start = monotonic_ns();
        let flag = std::sync::atomic::AtomicBool::new(false);
        let got = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(30));
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            // A deadline a century away.
            t.wait_until_or(start + 3_000_000_000_000_000_000, &|| {
                flag.load(std::sync::atomic::Ordering::SeqCst)
            })
        });
        assert_eq!(got, None);
        // Generous bound for a loaded machine: far below the deadline, a few chunks after the cancel.
        assert!(monotonic_ns() - start < 5_000_000_000);
    }

    #[test]
    fn monotonic_spin_never_returns_early_and_rest_passes_time() {
        let mut t = MonotonicTimer::new(50_000);
        let deadline = monotonic_ns() + 300_000;
        assert!(t.spin_until(deadline) >= deadline);
        let before = monotonic_ns();
        t.rest(200_000);
        assert!(monotonic_ns() - before >= 200_000);
    }

    #[test]
    fn simulated_spin_is_an_exact_wait_and_rest_takes_no_time() {
        let mut t = SimulatedTimer::new(0).inject_lateness(1, 700);
        assert_eq!(t.spin_until(100), 100);
        t.rest(1_000_000);
        assert_eq!(t.now(), 100);
        assert_eq!(t.spin_until(200), 900);
    }

    #[test]
    fn simulated_timer_injects_lateness_on_the_chosen_wait() {
        let mut t = SimulatedTimer::new(0).inject_lateness(1, 700);
        assert_eq!(t.wait_until(100), 100);
        assert_eq!(t.wait_until(200), 900);
        assert_eq!(t.wait_until(1000), 1000);
    }
}
