//! Password hashing keeps its memory bounded: 50 hashes and checks on many long-lived threads (as tokio's
//! blocking pool runs them) leave at most one argon2 working memory (19 MiB) per concurrent hash resident.
//! Its own test binary: the resident set of the process is measured.

use std::sync::mpsc;

use shotline_actors::auth::{hash_password, verify_password};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn fifty_hashes_on_many_threads_keep_memory_bounded() {
    const THREADS: usize = 16;
    const CONCURRENT: usize = 2;
    const HASHES: usize = 50;
    let stored = hash_password("a password").unwrap();
    let before = rss_bytes();
    // Long-lived workers, each handed hashes in turn, at most CONCURRENT at a time.
    let mut workers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::channel::<(usize, mpsc::Sender<bool>)>();
        let stored = stored.clone();
        let handle = std::thread::spawn(move || {
            while let Ok((i, done)) = rx.recv() {
                let ok = if i % 2 == 0 {
                    hash_password("another password").is_ok()
                } else {
                    verify_password("a password", &stored)
                };
                let _ = done.send(ok);
            }
        });
        workers.push((tx, handle));
    }
    let mut i = 0;
    while i < HASHES {
        let mut waits = Vec::new();
        for _ in 0..CONCURRENT {
            let (done, wait) = mpsc::channel();
            workers[i % THREADS].0.send((i, done)).unwrap();
            waits.push(wait);
            i += 1;
        }
        for w in waits {
            assert!(w.recv().unwrap(), "hash or check failed");
        }
    }
    let after = rss_bytes();
    let grown = after.saturating_sub(before);
    let bound = CONCURRENT as u64 * 20 * 1024 * 1024 + 30 * 1024 * 1024;
    eprintln!(
        "VmRSS before {} MiB, after {HASHES} hashes on {THREADS} threads {} MiB (grown {} MiB, bound {} MiB)",
        before >> 20,
        after >> 20,
        grown >> 20,
        bound >> 20
    );
    assert!(
        grown < bound,
        "argon2 left {} MiB resident after {HASHES} hashes (bound {} MiB)",
        grown >> 20,
        bound >> 20
    );
    for (tx, h) in workers {
        drop(tx);
        h.join().unwrap();
    }
}
