//! A diagnostic shot-clock timer: the same wait as `MonotonicTimer` (sleep until the margin, then spin), plus
//! one record per wait of what happened during it (when it slept, when the sleep returned, when the wait
//! returned, involuntary context switches, the CPU). `shot_clock --noisy` uses it when the environment
//! variable `SHOTLINE_WAIT_DIAG` is set and prints a summary of the late waits to stderr; it answers "was the
//! clock sleeping or spinning when an event came out late, and how late was its wake-up".

use std::sync::{Arc, Mutex};

use shotline_hal::time::{monotonic_ns, sleep_until_ns, Nanos, ShotTimer};

/// One wait of the shot clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitRecord {
    /// Deadline asked for.
    pub deadline: Nanos,
    /// Time the wait began.
    pub entered: Nanos,
    /// Target of the sleep (deadline − margin), 0 when the wait did not sleep.
    pub sleep_to: Nanos,
    /// Time the sleep returned (0 when it did not sleep).
    pub woke: Nanos,
    /// Time the wait returned.
    pub returned: Nanos,
    /// Involuntary context switches of the thread during the wait.
    pub preempted: u64,
    /// CPU the wait returned on.
    pub cpu: i32,
}

/// Where the records go when the timer is dropped (the shot clock thread ends).
pub type Sink = Arc<Mutex<Vec<WaitRecord>>>;

/// The diagnostic timer.
pub struct DiagTimer {
    margin_ns: Nanos,
    records: Vec<WaitRecord>,
    sink: Sink,
}

impl DiagTimer {
    /// A timer with `margin_ns` whose records end up in `sink`.
    pub fn new(margin_ns: Nanos, sink: Sink) -> Self {
        Self {
            margin_ns,
            records: Vec::with_capacity(1 << 16),
            sink,
        }
    }
}

fn nivcsw() -> u64 {
    // SAFETY: plain data written by the kernel, calling thread only.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut ru) != 0 {
            return 0;
        }
        ru.ru_nivcsw as u64
    }
}

impl ShotTimer for DiagTimer {
    fn now(&mut self) -> Nanos {
        monotonic_ns()
    }

    fn wait_until(&mut self, deadline: Nanos) -> Nanos {
        let sw0 = nivcsw();
        let entered = monotonic_ns();
        let mut rec = WaitRecord {
            deadline,
            entered,
            ..WaitRecord::default()
        };
        let mut now = entered;
        if now < deadline && deadline - now > self.margin_ns {
            rec.sleep_to = deadline - self.margin_ns;
            sleep_until_ns(rec.sleep_to);
            rec.woke = monotonic_ns();
        }
        while now < deadline {
            std::hint::spin_loop();
            now = monotonic_ns();
        }
        rec.returned = now;
        rec.preempted = nivcsw().saturating_sub(sw0);
        // SAFETY: plain call.
        rec.cpu = unsafe { libc::sched_getcpu() };
        if self.records.len() < self.records.capacity() {
            self.records.push(rec);
        }
        now
    }

    fn spin_until(&mut self, deadline: Nanos) -> Nanos {
        self.spin(deadline)
    }

    fn rest(&mut self, ns: Nanos) {
        if ns > 0 {
            sleep_until_ns(monotonic_ns().saturating_add(ns));
        }
    }
}

impl DiagTimer {
    fn spin(&mut self, deadline: Nanos) -> Nanos {
        let sw0 = nivcsw();
        let entered = monotonic_ns();
        let mut now = entered;
        while now < deadline {
            std::hint::spin_loop();
            now = monotonic_ns();
        }
        let rec = WaitRecord {
            deadline,
            entered,
            returned: now,
            preempted: nivcsw().saturating_sub(sw0),
            // SAFETY: plain call.
            cpu: unsafe { libc::sched_getcpu() },
            ..WaitRecord::default()
        };
        if self.records.len() < self.records.capacity() {
            self.records.push(rec);
        }
        now
    }
}

impl Drop for DiagTimer {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sink.lock() {
            s.append(&mut self.records);
        }
    }
}

/// Whether `SHOTLINE_WAIT_DIAG` asks for the diagnostic timer.
pub fn enabled() -> bool {
    std::env::var_os("SHOTLINE_WAIT_DIAG").is_some()
}

fn pct(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q) as usize]
}

/// Prints to stderr a summary of `records` of the variant `label`: wake-up delays of every sleep, and each
/// wait later than `late_ns` (at most 40 of them) with what the clock was doing.
pub fn report(label: &str, records: &[WaitRecord], late_ns: Nanos) {
    let mut wake: Vec<u64> = records
        .iter()
        .filter(|r| r.sleep_to > 0)
        .map(|r| r.woke.saturating_sub(r.sleep_to))
        .collect();
    let sleeps = wake.len();
    let late: Vec<&WaitRecord> = records
        .iter()
        .filter(|r| r.returned.saturating_sub(r.deadline) > late_ns)
        .collect();
    let late_sleeping = late.iter().filter(|r| r.sleep_to > 0).count();
    let late_preempted = late.iter().filter(|r| r.preempted > 0).count();
    let late_behind = late.iter().filter(|r| r.entered >= r.deadline).count();
    let cpus: std::collections::BTreeSet<i32> = records.iter().map(|r| r.cpu).collect();
    eprintln!(
        "diag {label}: {} waits, {sleeps} slept (wake-up delay p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns), cpus {cpus:?}; \
         {} waits > {late_ns} ns late: {late_sleeping} had slept, {late_behind} began after the deadline, \
         {late_preempted} had involuntary switches",
        records.len(),
        pct(&mut wake, 0.5),
        pct(&mut wake, 0.99),
        pct(&mut wake, 0.999),
        pct(&mut wake, 1.0),
        late.len(),
    );
    let t_first = records.first().map_or(0, |r| r.entered);
    for r in late.iter().take(40) {
        let prev_gap = records
            .iter()
            .position(|x| std::ptr::eq(x, *r))
            .and_then(|i| i.checked_sub(1))
            .map(|i| r.entered.saturating_sub(records[i].returned));
        eprintln!(
            "  late {:>8} ns at +{:>6} ms: asked {:>7} ns ahead, {}, preempted {}, cpu {}, since previous wait {:?} ns",
            r.returned.saturating_sub(r.deadline),
            (r.entered - t_first) / 1_000_000,
            r.deadline as i64 - r.entered as i64,
            if r.sleep_to > 0 {
                format!(
                    "slept to -{} ns, woke {} ns after its target",
                    r.deadline - r.sleep_to,
                    r.woke.saturating_sub(r.sleep_to)
                )
            } else {
                "spun only".to_string()
            },
            r.preempted,
            r.cpu,
            prev_gap,
        );
    }
}
