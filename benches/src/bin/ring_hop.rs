//! `ring_hop`: one 64-byte message from a producer thread to a consumer thread, through the rtrb SPSC ring
//! shotline's shot path uses and the obvious alternatives (crossbeam-channel, tokio mpsc, std mpsc), all
//! measured in the same run.
//!
//! Per channel, one row named after the channel with the one-way hop latency at a paced rate (one record
//! every 10 µs, stamped with the monotonic clock just before the push, measured at pop: p50/p99/p99.9/max),
//! and one row `<channel>_burst` with the throughput of a burst (the producer pushes N records as fast as
//! the channel takes them; median of several bursts). All channels hold 4096 records. Target: the rtrb hop
//! p99 at least 3 × lower than tokio mpsc's in the same run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use shotline_benches::{
    args_or_exit, fraction, new_histogram, record, thread_cpu_ns, Percentiles, Report, ResultRow,
    Target,
};
use shotline_hal::time::monotonic_ns;

/// Counts every allocation of the process, to report allocations per burst.
struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Channel capacity, in records, for every channel.
const CAPACITY: usize = 4096;
/// Pace of the latency run.
const INTERVAL_NS: u64 = 10_000;
/// Poll interval of the polling consumer (shotline's acquisition drains the rings on a timer).
const POLL: Duration = Duration::from_millis(1);

/// A fixed-size record, the size of a cache line, like a shot-path record.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Rec {
    seq: u64,
    pushed_ns: u64,
    payload: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<Rec>() == 64);

impl Rec {
    fn new(seq: u64, pushed_ns: u64) -> Self {
        Self {
            seq,
            pushed_ns,
            payload: [seq; 6],
        }
    }
}

/// Producer side: hands over one record, waiting (spinning or blocking) while the channel is full.
trait Tx: Send + 'static {
    fn send(&mut self, r: Rec) -> Result<()>;
}

/// Consumer side: receives exactly `n` records, calling `f` on each.
trait Rx: Send + 'static {
    fn recv_n<F: FnMut(Rec)>(self, n: u64, f: F) -> Result<()>;
}

struct RtrbTx(rtrb::Producer<Rec>);

impl Tx for RtrbTx {
    fn send(&mut self, mut r: Rec) -> Result<()> {
        loop {
            match self.0.push(r) {
                Ok(()) => return Ok(()),
                Err(rtrb::PushError::Full(back)) => {
                    if self.0.is_abandoned() {
                        return Err(anyhow!("rtrb consumer gone"));
                    }
                    r = back;
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// rtrb consumer that spins on `pop` (`poll: None`) or drains and sleeps `poll` between drains.
struct RtrbRx {
    rx: rtrb::Consumer<Rec>,
    poll: Option<Duration>,
}

impl Rx for RtrbRx {
    fn recv_n<F: FnMut(Rec)>(mut self, n: u64, mut f: F) -> Result<()> {
        let mut got = 0;
        while got < n {
            match self.rx.pop() {
                Ok(r) => {
                    f(r);
                    got += 1;
                }
                Err(_) => {
                    if self.rx.is_abandoned() && self.rx.is_empty() {
                        return Err(anyhow!("rtrb producer gone after {got} of {n} records"));
                    }
                    match self.poll {
                        Some(d) => thread::sleep(d),
                        None => std::hint::spin_loop(),
                    }
                }
            }
        }
        Ok(())
    }
}

struct CrossbeamTx(crossbeam::channel::Sender<Rec>);

impl Tx for CrossbeamTx {
    fn send(&mut self, r: Rec) -> Result<()> {
        self.0
            .send(r)
            .map_err(|_| anyhow!("crossbeam receiver gone"))
    }
}

struct CrossbeamRx(crossbeam::channel::Receiver<Rec>);

impl Rx for CrossbeamRx {
    fn recv_n<F: FnMut(Rec)>(self, n: u64, mut f: F) -> Result<()> {
        for i in 0..n {
            f(self
                .0
                .recv()
                .map_err(|_| anyhow!("crossbeam sender gone after {i} of {n} records"))?);
        }
        Ok(())
    }
}

struct StdTx(std::sync::mpsc::SyncSender<Rec>);

impl Tx for StdTx {
    fn send(&mut self, r: Rec) -> Result<()> {
        self.0.send(r).map_err(|_| anyhow!("std receiver gone"))
    }
}

struct StdRx(std::sync::mpsc::Receiver<Rec>);

impl Rx for StdRx {
    fn recv_n<F: FnMut(Rec)>(self, n: u64, mut f: F) -> Result<()> {
        for i in 0..n {
            f(self
                .0
                .recv()
                .map_err(|_| anyhow!("std sender gone after {i} of {n} records"))?);
        }
        Ok(())
    }
}

/// tokio producer on a plain thread (`blocking_send`).
struct TokioTx(tokio::sync::mpsc::Sender<Rec>);

impl Tx for TokioTx {
    fn send(&mut self, r: Rec) -> Result<()> {
        self.0
            .blocking_send(r)
            .map_err(|_| anyhow!("tokio receiver gone"))
    }
}

/// tokio consumer: `recv().await` in a current-thread runtime built on the consumer thread.
struct TokioRx(tokio::sync::mpsc::Receiver<Rec>);

impl Rx for TokioRx {
    fn recv_n<F: FnMut(Rec)>(mut self, n: u64, mut f: F) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .context("building the tokio current-thread runtime")?;
        rt.block_on(async {
            for i in 0..n {
                match self.0.recv().await {
                    Some(r) => f(r),
                    None => return Err(anyhow!("tokio sender gone after {i} of {n} records")),
                }
            }
            Ok(())
        })
    }
}

/// The channels under test.
#[derive(Debug, Clone, Copy)]
enum Kind {
    RtrbSpin,
    RtrbPoll1ms,
    Crossbeam,
    StdSync,
    Tokio,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::RtrbSpin,
        Kind::RtrbPoll1ms,
        Kind::Crossbeam,
        Kind::StdSync,
        Kind::Tokio,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::RtrbSpin => "rtrb_spsc",
            Kind::RtrbPoll1ms => "rtrb_spsc_poll_1ms",
            Kind::Crossbeam => "crossbeam_bounded",
            Kind::StdSync => "std_sync_channel",
            Kind::Tokio => "tokio_mpsc",
        }
    }

    fn consumer(self) -> &'static str {
        match self {
            Kind::RtrbSpin => "busy-poll",
            Kind::RtrbPoll1ms => "drain every 1 ms",
            Kind::Crossbeam | Kind::StdSync => "blocking recv",
            Kind::Tokio => "recv().await, current-thread rt",
        }
    }
}

/// What a pair of threads measured.
struct Measured {
    /// Consumer-side wall time from the start signal to the last record.
    wall_ns: u64,
    /// Allocations of the whole process between the start signal and the end of both threads.
    allocs: u64,
    /// One-way latencies (paced mode only).
    latency: Histogram<u64>,
    /// CPU time of the consumer thread over `wall_ns`.
    consumer_cpu_ns: u64,
}

/// Runs the producer and consumer of one channel on two threads. `paced`: push one record every
/// `INTERVAL_NS` and record latencies (skipping the first `warmup`); otherwise push as fast as possible.
fn run_pair<T: Tx, R: Rx>(mut tx: T, rx: R, n: u64, paced: bool, warmup: u64) -> Result<Measured> {
    let start = Arc::new(Barrier::new(3));
    let producer = {
        let start = start.clone();
        thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || -> Result<()> {
                start.wait();
                if !paced {
                    for i in 0..n {
                        tx.send(Rec::new(i, 0))?;
                    }
                    return Ok(());
                }
                // Absolute schedule, spinning like the shot clock does between close deadlines.
                let mut next = monotonic_ns() + INTERVAL_NS;
                for i in 0..n {
                    while monotonic_ns() < next {
                        std::hint::spin_loop();
                    }
                    tx.send(Rec::new(i, monotonic_ns()))?;
                    next += INTERVAL_NS;
                }
                Ok(())
            })?
    };
    let consumer = {
        let start = start.clone();
        thread::Builder::new().name("bench-consumer".into()).spawn(
            move || -> Result<(u64, u64, Histogram<u64>)> {
                let mut latency = new_histogram();
                let mut expected = 0u64;
                let mut out_of_order = 0u64;
                start.wait();
                let t0 = monotonic_ns();
                let cpu0 = thread_cpu_ns();
                rx.recv_n(n, |r| {
                    if paced && r.seq >= warmup {
                        record(&mut latency, monotonic_ns().saturating_sub(r.pushed_ns));
                    }
                    if r.seq != expected || r.payload[5] != r.seq {
                        out_of_order += 1;
                    }
                    expected = r.seq + 1;
                })?;
                let wall = monotonic_ns() - t0;
                let cpu = thread_cpu_ns() - cpu0;
                if out_of_order > 0 {
                    return Err(anyhow!("{out_of_order} records arrived out of order"));
                }
                Ok((wall, cpu, latency))
            },
        )?
    };
    let before = ALLOCS.load(Ordering::SeqCst);
    start.wait();
    let produced = producer
        .join()
        .map_err(|_| anyhow!("producer thread panicked"))?;
    let consumed = consumer
        .join()
        .map_err(|_| anyhow!("consumer thread panicked"))?;
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    produced?;
    let (wall_ns, consumer_cpu_ns, latency) = consumed?;
    Ok(Measured {
        wall_ns,
        consumer_cpu_ns,
        allocs,
        latency,
    })
}

fn run_kind(kind: Kind, n: u64, paced: bool, warmup: u64) -> Result<Measured> {
    match kind {
        Kind::RtrbSpin | Kind::RtrbPoll1ms => {
            let (tx, rx) = rtrb::RingBuffer::new(CAPACITY);
            let poll = matches!(kind, Kind::RtrbPoll1ms).then_some(POLL);
            run_pair(RtrbTx(tx), RtrbRx { rx, poll }, n, paced, warmup)
        }
        Kind::Crossbeam => {
            let (tx, rx) = crossbeam::channel::bounded(CAPACITY);
            run_pair(CrossbeamTx(tx), CrossbeamRx(rx), n, paced, warmup)
        }
        Kind::StdSync => {
            let (tx, rx) = std::sync::mpsc::sync_channel(CAPACITY);
            run_pair(StdTx(tx), StdRx(rx), n, paced, warmup)
        }
        Kind::Tokio => {
            let (tx, rx) = tokio::sync::mpsc::channel(CAPACITY);
            run_pair(TokioTx(tx), TokioRx(rx), n, paced, warmup)
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let args = args_or_exit(
        "ring_hop",
        "ring_hop: one 64-byte message across threads (rtrb vs crossbeam vs tokio mpsc vs std mpsc)",
    );
    let (burst_n, bursts, paced_n) = if args.quick {
        (100_000u64, 3usize, 20_000u64)
    } else {
        (1_000_000, 5, 200_000)
    };
    let warmup = (paced_n / 20).min(1_000);
    let mut report = Report::new("ring_hop", args);
    let mut burst_rows = Vec::new();
    for kind in Kind::ALL {
        let mut rates = Vec::with_capacity(bursts);
        let mut allocs = Vec::with_capacity(bursts);
        for _ in 0..bursts {
            let m = run_kind(kind, burst_n, false, 0)
                .with_context(|| format!("{}: burst of {burst_n}", kind.name()))?;
            rates.push(burst_n as f64 / (m.wall_ns.max(1) as f64 / 1e9));
            allocs.push(m.allocs);
        }
        let paced = run_kind(kind, paced_n, true, warmup)
            .with_context(|| format!("{}: paced run of {paced_n}", kind.name()))?;
        let best = rates.iter().copied().fold(0.0, f64::max);
        let worst = rates.iter().copied().fold(f64::INFINITY, f64::min);
        report.results.push(
            ResultRow::new(kind.name())
                .percentiles(&Percentiles::of(&paced.latency))
                .field("interval_ns", INTERVAL_NS)
                .field(
                    "consumer_cpu_fraction",
                    fraction(paced.consumer_cpu_ns, paced.wall_ns),
                )
                .field("consumer", kind.consumer()),
        );
        burst_rows.push(
            ResultRow::new(format!("{}_burst", kind.name()))
                .rate(median(&mut rates).round())
                .field("per_s_min", worst.round())
                .field("per_s_max", best.round())
                .field("burst", burst_n)
                .field("bursts", bursts as u64)
                .field(
                    "allocs_per_burst",
                    allocs.iter().max().copied().unwrap_or(0),
                ),
        );
    }
    report.results.extend(burst_rows);
    let p99 = |name: &str| report.row(name).and_then(|r| r.p99_ns).unwrap_or(0);
    let (rtrb, tokio) = (p99(Kind::RtrbSpin.name()), p99(Kind::Tokio.name()));
    let target = Target::new(
        "target_p99_vs_tokio",
        rtrb.saturating_mul(3) <= tokio && tokio > 0,
        "rtrb_spsc hop p99 at least 3 x lower than tokio_mpsc p99",
        format!(
            "rtrb p99 {rtrb} ns, tokio p99 {tokio} ns: {:.2} x lower",
            tokio as f64 / rtrb.max(1) as f64
        ),
    );
    report.check(Kind::RtrbSpin.name(), target);
    report.print(args.json)?;
    Ok(())
}
