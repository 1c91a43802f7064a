//! Keeping the cores that backends reserve for pinned shot clocks (`timing.realtime.cpu` with
//! `realtime.enabled`) free of every other thread: tokio workers, the blocking pool, the store's writer
//! thread, and any worker process started later all inherit the affinity of the thread that created them.
//!
//! `shotline serve` excludes the reserved cores from its main thread before any other thread exists. An
//! embedder owns its tokio runtime, whose threads exist before [`crate::Runtime::start`] runs, so the runtime
//! cannot move them (changing another library's threads behind its back would be worse): the embedder calls
//! [`reserve_shot_clock_cpus`] on its main thread before building its tokio runtime, and
//! [`crate::Runtime::start`] warns when the calling thread may still run on a reserved core.

use shotline_config::Config;

/// The cores that the backends of `config` pin their shot clocks to.
pub fn reserved_cpus(config: &Config) -> Vec<usize> {
    let mut cpus: Vec<usize> = config
        .backends
        .iter()
        .filter(|b| b.timing.realtime.enabled)
        .filter_map(|b| b.timing.realtime.cpu)
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// Removes the reserved cores of `config` from the calling thread's affinity, so every thread (and process)
/// it creates afterwards stays off them. Call it on the main thread before building the tokio runtime.
/// Refused (with the reason) if it would leave no core.
pub fn reserve_shot_clock_cpus(config: &Config) -> Result<Vec<usize>, String> {
    let cpus = reserved_cpus(config);
    shotline_hal::realtime::exclude_cpus(&cpus)?;
    Ok(cpus)
}

/// The reserved cores of `config` that the calling thread may still run on (empty when they were reserved,
/// or when none are).
pub fn unreserved(config: &Config) -> Vec<usize> {
    let allowed = shotline_hal::realtime::allowed_cpus();
    reserved_cpus(config)
        .into_iter()
        .filter(|c| allowed.contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserving_keeps_later_threads_off_the_pinned_core() {
        std::thread::spawn(|| {
            let allowed = shotline_hal::realtime::allowed_cpus();
            let mut config =
                shotline_config::parse_str(shotline_config::SIM_YAML, "sim.yaml").unwrap();
            assert!(reserved_cpus(&config).is_empty());
            assert!(unreserved(&config).is_empty());
            if allowed.len() < 2 {
                return;
            }
            let cpu = allowed[allowed.len() - 1];
            let rt = &mut config.backends[0].timing.realtime;
            rt.enabled = true;
            rt.cpu = Some(cpu);
            assert_eq!(unreserved(&config), vec![cpu]);
            assert_eq!(reserve_shot_clock_cpus(&config), Ok(vec![cpu]));
            assert!(unreserved(&config).is_empty());
            let child = std::thread::spawn(shotline_hal::realtime::allowed_cpus)
                .join()
                .unwrap();
            assert!(!child.contains(&cpu), "a later thread may run on cpu {cpu}");
        })
        .join()
        .unwrap();
    }
}
