//! Shot reports of the reference card, generated one message at a time as the link's window
//! allows: `EventTimestamps` (≤ 126 per message), `AcquisitionChunk`s (≤ 253 samples) for each
//! acquire event, then `Status`.

use super::outputs::LevelReplay;
use super::{event_kind, Card, CardTime, Phase, StoredEvent, MAX_ACQUIRE_SAMPLES, SAFE_LEVEL};
use crate::message::{Message, MAX_ACQ_SAMPLES, MAX_TIMESTAMPS};

impl<const WINDOW: usize> Card<'_, WINDOW> {
    /// The next message of the report in progress (`None`: no report, or it is complete).
    pub(super) fn next_report_message(&mut self, now: CardTime) -> Option<Message> {
        let mut r = self.report?;
        let n = self.loaded();
        loop {
            match r.phase {
                Phase::Timestamps { next } => {
                    let first = next as usize;
                    if first >= n {
                        r.phase = Phase::Acquire {
                            event: 0,
                            sample: 0,
                        };
                        continue;
                    }
                    let count = (n - first).min(MAX_TIMESTAMPS);
                    let mut applied_ticks = heapless::Vec::new();
                    for ev in self.storage.get(first..first + count).unwrap_or(&[]) {
                        let _ = applied_ticks.push(ev.applied_ticks);
                    }
                    r.phase = Phase::Timestamps {
                        next: next.saturating_add(count as u32),
                    };
                    self.report = Some(r);
                    return Some(Message::EventTimestamps {
                        shot: r.shot,
                        first_event: next,
                        applied_ticks,
                    });
                }
                Phase::Acquire { event, sample } => {
                    let found = self
                        .storage
                        .get(event as usize..n)
                        .unwrap_or(&[])
                        .iter()
                        .position(|e| e.event.kind == event_kind::ACQUIRE);
                    let Some(pos) = found else {
                        r.phase = Phase::Status;
                        continue;
                    };
                    let index = event as usize + pos;
                    let Some(acq) = self.storage.get(index).copied() else {
                        r.phase = Phase::Status;
                        continue;
                    };
                    let total = acq.event.value.clamp(1, MAX_ACQUIRE_SAMPLES) as u32;
                    let sample = if index == event as usize { sample } else { 0 };
                    let count = (total - sample.min(total)).min(MAX_ACQ_SAMPLES as u32);
                    let samples = self.acquire(&acq, n, sample, count, total);
                    r.phase = if sample + count >= total {
                        Phase::Acquire {
                            event: index as u32 + 1,
                            sample: 0,
                        }
                    } else {
                        Phase::Acquire {
                            event: index as u32,
                            sample: sample + count,
                        }
                    };
                    self.report = Some(r);
                    return Some(Message::AcquisitionChunk {
                        shot: r.shot,
                        channel: acq.event.channel,
                        offset: sample,
                        samples,
                    });
                }
                Phase::Status => {
                    self.report = None;
                    self.shots_since_arm = self.shots_since_arm.saturating_add(1);
                    if r.shots_left > 0 {
                        self.begin_shot(r.end_ticks.max(now.ticks), r.shots_left - 1);
                    } else {
                        self.machine.finished();
                    }
                    return Some(self.status(now));
                }
            }
        }
    }

    /// Loopback samples `first .. first + count` of acquire event `acq` (of `total`): sample k is
    /// the level of output `channel` at `applied + k · duration / total`.
    fn acquire(
        &self,
        acq: &StoredEvent,
        n: usize,
        first: u32,
        count: u32,
        total: u32,
    ) -> heapless::Vec<i32, MAX_ACQ_SAMPLES> {
        let channel = acq.event.channel;
        let base = self
            .shot_bases
            .get(usize::from(channel))
            .copied()
            .unwrap_or(SAFE_LEVEL);
        let known = usize::from(channel) < usize::from(self.config.channels);
        let mut replay = LevelReplay::new(self.storage.get(..n).unwrap_or(&[]), channel, base);
        let mut samples = heapless::Vec::new();
        for k in first..first.saturating_add(count) {
            let offset = u128::from(acq.event.duration_ticks) * u128::from(k) / u128::from(total);
            let tick = acq
                .applied_ticks
                .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX));
            let level = if known { replay.level_at(tick) } else { 0 };
            let _ = samples.push(level);
        }
        samples
    }
}
