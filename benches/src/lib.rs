//! Shared helpers of the shotline benchmark binaries (`ring_hop`, `shot_clock`, `pipeline`, `e2e_inproc`,
//! `gateway`, `e2e_quic`) and drills (`crash_trials`, `soak`).
//!
//! - [`parse_args`] / [`args_or_exit`]: the `--quick` / `--json` command line;
//! - [`new_histogram`], [`Percentiles`]: nanosecond distributions summarised from an HDR histogram;
//! - [`ResultRow`], [`Report`], [`Target`]: one JSON document (`--json`) or a readable table per run, with
//!   the pass/miss of each performance target checked in that run;
//! - [`inproc`]: an in-process shotline runtime on the embedded `sim.yaml`, and timed submissions;
//! - [`remote`]: an in-process runtime with the QUIC gateway, logged-in clients, the `shotline` binary for
//!   the drills and their numeric options;
//! - [`thread_cpu_ns`]: CPU time of the calling thread, for the "fraction of wall time on CPU" figures.

use std::fmt::Write as _;

pub mod inproc;
pub mod noisy;
pub mod remote;
pub mod wait_diag;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

/// Options shared by every benchmark binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Args {
    /// Fewer iterations (each binary stays under 60 s).
    pub quick: bool,
    /// Print one JSON document instead of a table.
    pub json: bool,
    /// `shot_clock` and `e2e_inproc`: run under a CPU+memory stressor and control-plane load, with and without
    /// the real-time opt-in (the other benchmarks refuse it).
    pub noisy: bool,
}

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Run the benchmark with these options.
    Run(Args),
    /// `--help` / `-h`: print the usage and exit successfully.
    Help,
}

/// Parses the arguments after the program name. Every argument other than `--quick`, `--json`, `--help`
/// and `-h` is an error naming the argument and the allowed ones.
pub fn parse_args<I, S>(args: I) -> Result<Parsed, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut parsed = Args::default();
    for arg in args {
        match arg.as_ref() {
            "--quick" => parsed.quick = true,
            "--json" => parsed.json = true,
            "--noisy" => parsed.noisy = true,
            "--help" | "-h" => return Ok(Parsed::Help),
            other => {
                return Err(format!(
                    "unknown argument `{other}`; allowed: --quick, --json, --noisy, --help"
                ))
            }
        }
    }
    Ok(Parsed::Run(parsed))
}

/// Parses `std::env::args()`; prints the usage and exits 0 on `--help`, prints the error and the usage and
/// exits 2 on a bad argument.
pub fn args_or_exit(binary: &str, about: &str) -> Args {
    let usage = format!(
        "{about}\n\nusage: cargo run --release --bin {binary} -- [--quick] [--json] [--noisy]\n  \
         --quick  fewer iterations (under 60 s)\n  --json   print one JSON document instead of a table\n  \
         --noisy  (shot_clock, e2e_inproc) under a CPU+memory stressor and control-plane load, with and \
         without the real-time opt-in"
    );
    match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) if args.noisy && !matches!(binary, "shot_clock" | "e2e_inproc") => {
            eprintln!(
                "{binary}: --noisy is only implemented by shot_clock and e2e_inproc\n\n{usage}"
            );
            std::process::exit(2);
        }
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{usage}");
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{binary}: {message}\n\n{usage}");
            std::process::exit(2);
        }
    }
}

/// Largest value a histogram tracks exactly: 100 s in ns (larger values are clamped to it).
pub const HISTOGRAM_MAX_NS: u64 = 100_000_000_000;

/// A histogram of nanoseconds from 0 to [`HISTOGRAM_MAX_NS`] with 3 significant digits (0.1 % resolution).
/// It is allocated once here: recording never allocates.
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds (1 <= low, high >= 2 * low, sigfig <= 5): creation cannot fail.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds rejected: {e}"))
}

/// Records `value_ns` (values above [`HISTOGRAM_MAX_NS`] are clamped to it).
pub fn record(histogram: &mut Histogram<u64>, value_ns: u64) {
    histogram.saturating_record(value_ns);
}

/// Percentile summary of a nanosecond distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Number of samples.
    pub samples: u64,
}

impl Percentiles {
    /// Summarises `histogram` (all zeros when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self {
                p50_ns: 0,
                p99_ns: 0,
                p999_ns: 0,
                max_ns: 0,
                samples: 0,
            };
        }
        Self {
            p50_ns: histogram.value_at_quantile(0.5),
            p99_ns: histogram.value_at_quantile(0.99),
            p999_ns: histogram.value_at_quantile(0.999),
            max_ns: histogram.max(),
            samples: histogram.len(),
        }
    }
}

/// One line of results: a rate and/or a latency distribution, plus benchmark-specific fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    /// What was measured (e.g. `rtrb_spsc`).
    pub name: String,
    /// Throughput in items per second (`null` when the row is a pure latency figure).
    pub per_s: Option<f64>,
    /// Median in ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile in ns.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile in ns.
    pub p999_ns: Option<u64>,
    /// Maximum in ns.
    pub max_ns: Option<u64>,
    /// Further fields, printed after the standard ones in insertion order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResultRow {
    /// An empty row named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            per_s: None,
            p50_ns: None,
            p99_ns: None,
            p999_ns: None,
            max_ns: None,
            extra: Map::new(),
        }
    }

    /// Sets the throughput.
    pub fn rate(mut self, per_s: f64) -> Self {
        self.per_s = Some(per_s);
        self
    }

    /// Sets the percentiles and adds a `samples` field.
    pub fn percentiles(mut self, p: &Percentiles) -> Self {
        self.p50_ns = Some(p.p50_ns);
        self.p99_ns = Some(p.p99_ns);
        self.p999_ns = Some(p.p999_ns);
        self.max_ns = Some(p.max_ns);
        self.extra.insert("samples".into(), p.samples.into());
        self
    }

    /// Adds a benchmark-specific field.
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// 1, 5 and 15 minute load averages when the run started.
    pub load_avg: Vec<f64>,
    /// The kernel clock source behind `CLOCK_MONOTONIC`.
    pub clocksource: String,
}

impl Machine {
    /// Reads the current machine's figures (missing files give empty values).
    pub fn current() -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease"),
            load_avg: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect(),
            clocksource: read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        }
    }
}

/// A performance target checked against the figures of the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Short identifier, also used as the boolean field on the row it concerns (e.g. `target_p99_vs_spin`).
    pub name: String,
    /// The result row it was checked on (set by [`Report::check`]).
    pub row: String,
    /// Whether the run met the target.
    pub met: bool,
    /// The target in words.
    pub target: String,
    /// The figures it was checked on, in words.
    pub measured: String,
}

impl Target {
    /// A checked target.
    pub fn new(
        name: &str,
        met: bool,
        target: impl Into<String>,
        measured: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            row: String::new(),
            met,
            target: target.into(),
            measured: measured.into(),
        }
    }
}

/// The output of one benchmark binary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Binary name (`ring_hop`, `shot_clock`, `pipeline`, `e2e_inproc`).
    pub benchmark: String,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Whether `--noisy` was given.
    pub noisy: bool,
    /// Where it ran.
    pub machine: Machine,
    /// One row per measured variant.
    pub results: Vec<ResultRow>,
    /// The targets checked in this run (empty when the benchmark has none).
    pub targets: Vec<Target>,
    /// Notes on how to read the figures (method, quantisation).
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report for `benchmark`, capturing the machine (and its load) now.
    pub fn new(benchmark: &str, args: Args) -> Self {
        Self {
            benchmark: benchmark.into(),
            quick: args.quick,
            noisy: args.noisy,
            machine: Machine::current(),
            results: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records `target` and sets the boolean field `target.name` on the row called `row` (if present).
    pub fn check(&mut self, row: &str, mut target: Target) {
        target.row = row.into();
        if let Some(r) = self.results.iter_mut().find(|r| r.name == row) {
            r.extra.insert(target.name.clone(), target.met.into());
        }
        self.targets.push(target);
    }

    /// The row called `name`.
    pub fn row(&self, name: &str) -> Option<&ResultRow> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The report as a readable table (times in µs, rates with k/M suffixes).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "{}{}: {} cores, kernel {}, clocksource {}, load {:?}",
            self.benchmark,
            if self.quick { " (quick)" } else { "" },
            m.cores,
            m.kernel,
            m.clocksource,
            m.load_avg
        );
        let _ = writeln!(
            out,
            "{:<38} {:>10} {:>10} {:>10} {:>10} {:>10}  other",
            "name", "per s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        let us = |v: Option<u64>| v.map_or("-".to_string(), |ns| format!("{:.2}", ns as f64 / 1e3));
        for r in &self.results {
            let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "{:<38} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
                r.name,
                r.per_s.map_or("-".to_string(), si),
                us(r.p50_ns),
                us(r.p99_ns),
                us(r.p999_ns),
                us(r.max_ns),
                extra.join(" ")
            );
        }
        for t in &self.targets {
            let _ = writeln!(
                out,
                "target {:<28} {:<26} {}: {} (measured: {})",
                t.name,
                t.row,
                if t.met { "PASS" } else { "MISS" },
                t.target,
                t.measured
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// Prints the report to stdout: JSON when `json`, else the table.
    pub fn print(&self, json: bool) -> serde_json::Result<()> {
        if json {
            println!("{}", self.to_json()?);
        } else {
            print!("{}", self.to_table());
        }
        Ok(())
    }
}

/// `32.02M`, `812.3`: a rate for the table.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the per-thread CPU clock exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// `part / whole`, 0 when `whole` is 0, rounded to 3 decimals for printing.
pub fn fraction(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_in_any_order() {
        assert_eq!(
            parse_args(["--json", "--quick"]),
            Ok(Parsed::Run(Args {
                quick: true,
                json: true,
                noisy: false,
            }))
        );
        assert_eq!(
            parse_args(Vec::<String>::new()),
            Ok(Parsed::Run(Args::default()))
        );
        assert_eq!(parse_args(["--quick", "-h"]), Ok(Parsed::Help));
    }

    #[test]
    fn unknown_argument_is_named_with_the_allowed_ones() {
        let err = parse_args(["--quick", "--fast"]).unwrap_err();
        assert!(err.contains("`--fast`"), "{err}");
        assert!(err.contains("--quick, --json"), "{err}");
    }

    #[test]
    fn percentiles_summarise_the_distribution() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000);
        }
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        let p = Percentiles::of(&h);
        assert_eq!(p.samples, 1002);
        // 3 significant digits: within 0.1 %.
        assert!((499_000..=501_000).contains(&p.p50_ns), "{p:?}");
        assert!((989_000..=993_000).contains(&p.p99_ns), "{p:?}");
        assert!(p.max_ns >= HISTOGRAM_MAX_NS / 1000 * 999, "{p:?}");
        assert_eq!(Percentiles::of(&new_histogram()).samples, 0);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut report = Report::new("ring_hop", Args::default());
        let mut h = new_histogram();
        record(&mut h, 42);
        report.results.push(
            ResultRow::new("rtrb_spsc")
                .rate(1e6)
                .percentiles(&Percentiles::of(&h))
                .field("allocs", 0u64),
        );
        let v: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(v["benchmark"], "ring_hop");
        assert_eq!(v["quick"], false);
        assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
        let row = &v["results"][0];
        assert_eq!(row["name"], "rtrb_spsc");
        assert_eq!(row["per_s"], 1e6);
        assert_eq!(row["p50_ns"], 42);
        assert_eq!(row["max_ns"], 42);
        assert_eq!(row["samples"], 1);
        assert_eq!(row["allocs"], 0);
        assert!(report.to_table().contains("rtrb_spsc"));
        assert_eq!(v["targets"], serde_json::json!([]));
    }

    #[test]
    fn a_target_check_marks_its_row_and_is_listed() {
        let mut report = Report::new("ring_hop", Args::default());
        report.results.push(ResultRow::new("rtrb_spsc"));
        report.check(
            "rtrb_spsc",
            Target::new("target_p99_vs_tokio", false, "3x lower", "2x"),
        );
        let v: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(v["results"][0]["target_p99_vs_tokio"], false);
        assert_eq!(v["targets"][0]["met"], false);
        assert!(report.to_table().contains("MISS"));
    }
}
