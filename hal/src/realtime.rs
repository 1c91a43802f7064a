//! Opt-in real-time scheduling for the shot clock thread: core pinning, `SCHED_FIFO`, locked memory.
//!
//! Off by default (and in `sim.yaml` and the tests): on a 2-core machine a spinning real-time thread starves
//! everything else. When enabled and refused by the OS, the clock says once what it could not get and runs on.

/// What the shot clock thread should ask the OS for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RealtimeOptions {
    /// Master switch.
    pub enabled: bool,
    /// `SCHED_FIFO` priority (1..=99).
    pub priority: u8,
    /// Core to pin the thread to.
    pub cpu: Option<usize>,
    /// Lock the pages currently mapped (`mlockall(MCL_CURRENT)`, never `MCL_FUTURE`).
    pub mlock: bool,
}

/// Longest shot (lead + length) the clock may spin through: bounded so that a spinning clock (a
/// `SCHED_FIFO` one above all) always gives its core back within this plus the rest after it.
pub const MAX_SPIN_SHOT_NS: u64 = 100_000_000;

/// Whether a shot of `lead_ns + shot_len_ns` is spun through (no sleep inside it): the shot must be no longer
/// than `spin_shots_up_to_ns` (itself capped at [`MAX_SPIN_SHOT_NS`]; 0 = never). Under real time or not: a
/// sleep lets the vCPU halt, and its wake-up is what made events late (docs/performance.md).
pub fn spins_shot(spin_shots_up_to_ns: u64, lead_ns: u64, shot_len_ns: u64) -> bool {
    spin_shots_up_to_ns > 0
        && lead_ns.saturating_add(shot_len_ns) <= spin_shots_up_to_ns.min(MAX_SPIN_SHOT_NS)
}

/// Whether the clock rests between spun-through shots (a quarter of the time it spun): only when it runs
/// `SCHED_FIFO`, where the rest keeps the core ≤ 80 % busy and under the kernel's RT throttling. A
/// `SCHED_OTHER` clock shares its core fairly anyway, so resting would only slow back-to-back shots.
pub fn rests_between_shots(opts: &RealtimeOptions, granted: bool) -> bool {
    granted && opts.enabled
}

/// Applies `opts` to the calling thread; returns one line per thing the OS refused.
pub fn apply_realtime(opts: &RealtimeOptions) -> Vec<String> {
    let mut refused = Vec::new();
    if !opts.enabled {
        return refused;
    }
    if let Some(cpu) = opts.cpu {
        // SAFETY: cpu_set_t is plain data; the calls only read/write it.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            if cpu < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            refused.push(format!(
                "could not pin the shot clock to cpu {cpu}: {}; running unpinned",
                std::io::Error::last_os_error()
            ));
        }
    }
    let param = libc::sched_param {
        sched_priority: i32::from(opts.priority.clamp(1, 99)),
    };
    // SAFETY: valid sched_param for the calling thread (pid 0).
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        refused.push(format!(
            "could not get SCHED_FIFO priority {}: {}; running with normal scheduling",
            opts.priority,
            std::io::Error::last_os_error()
        ));
    }
    if opts.mlock {
        // SAFETY: plain syscall.
        let rc = unsafe { libc::mlockall(libc::MCL_CURRENT) };
        if rc != 0 {
            refused.push(format!(
                "could not lock memory: {}; pages may be swapped",
                std::io::Error::last_os_error()
            ));
        }
    }
    refused
}

/// Removes `cpus` from the calling thread's CPU affinity, so that threads it spawns afterwards (the tokio
/// workers, the store thread) stay off the cores reserved for pinned shot clocks. Does nothing (and says
/// why) if that would leave no CPU.
pub fn exclude_cpus(cpus: &[usize]) -> Result<(), String> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; the calls only read/write it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "cannot read the CPU affinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        for &c in cpus {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_CLR(c, &mut set);
            }
        }
        if libc::CPU_COUNT(&set) == 0 {
            return Err(format!(
                "reserving cpus {cpus:?} for shot clocks would leave no CPU for the rest; not reserving"
            ));
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "cannot set the CPU affinity: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: plain data, calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluding_a_cpu_keeps_later_threads_off_it_and_never_empties_the_set() {
        std::thread::spawn(|| {
            let before = allowed_cpus();
            assert!(!before.is_empty());
            // Excluding every CPU is refused and changes nothing.
            assert!(exclude_cpus(&before).is_err());
            assert_eq!(allowed_cpus(), before);
            if before.len() >= 2 {
                exclude_cpus(&[before[0]]).unwrap();
                let child = std::thread::spawn(allowed_cpus).join().unwrap();
                assert!(
                    !child.contains(&before[0]),
                    "child runs on the reserved cpu"
                );
                assert_eq!(child.len(), before.len() - 1);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn short_shots_are_spun_through_with_or_without_real_time() {
        assert!(spins_shot(2_000_000, 200_000, 1_000_000));
        assert!(spins_shot(2_000_000, 1_000_000, 1_000_000));
        // Longer than the setting, or switched off: sleep as usual.
        assert!(!spins_shot(2_000_000, 200_000, 1_900_000));
        assert!(!spins_shot(0, 0, 0));
        // The cap holds even for a larger setting.
        assert!(spins_shot(u64::MAX, 0, MAX_SPIN_SHOT_NS));
        assert!(!spins_shot(u64::MAX, 0, MAX_SPIN_SHOT_NS + 1));
        assert!(!spins_shot(u64::MAX, u64::MAX, u64::MAX));
    }

    #[test]
    fn only_a_real_time_clock_rests_between_shots() {
        let opts = RealtimeOptions {
            enabled: true,
            priority: 80,
            cpu: Some(1),
            mlock: false,
        };
        assert!(rests_between_shots(&opts, true));
        assert!(!rests_between_shots(&opts, false));
        assert!(!rests_between_shots(&RealtimeOptions::default(), false));
    }

    #[test]
    fn disabled_asks_for_nothing() {
        assert!(apply_realtime(&RealtimeOptions::default()).is_empty());
    }

    #[test]
    fn an_impossible_cpu_is_refused_and_reported() {
        let warnings = std::thread::spawn(|| {
            apply_realtime(&RealtimeOptions {
                enabled: true,
                priority: 1,
                cpu: Some(100_000),
                mlock: false,
            })
        })
        .join()
        .unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("cpu 100000")),
            "{warnings:?}"
        );
    }
}
