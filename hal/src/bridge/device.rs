//! [`BridgeDevice`]: a timing card behind the firmware bridge as a hardware-timed [`Device`].
//!
//! The card plays the uploaded timeline on its own clock; the shot clock only records the events
//! ([`Device::apply`]), triggers the shot at its host start time ([`Device::trigger`]) and collects the
//! applied times and acquisitions after it ([`Device::end_shot`], [`Device::applied_times`]).

use std::time::Duration;

use super::session::{CardInfo, Reply, Request, Session, SessionConfig, SessionError, ShotReport};
use super::transport::Endpoint;
use super::wire::{to_wire, TickScale};
use crate::device::{
    check_actions, Device, DeviceError, DeviceInfo, Readout, ReadoutValue, ShotContext,
    DDS_SETPOINTS, TTL_SETPOINTS,
};
use crate::lifecycle::{DeviceState, Lifecycle, Transition};
use crate::sim::{Coupling, SimWorld};
use crate::time::{monotonic_ns, Nanos};
use crate::timeline::{Action, DeviceTimeline, Event};

/// What the card drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeRole {
    /// Digital lines and timed pulses with a level (setpoints 0 ..= 1e6), plus acquisitions.
    Ttl,
    /// RF channels: pulses with a relative amplitude (0 ..= 1), plus acquisitions.
    Dds,
}

impl BridgeRole {
    fn driver(self) -> &'static str {
        match self {
            BridgeRole::Ttl => "bridge_ttl",
            BridgeRole::Dds => "bridge_dds",
        }
    }

    fn setpoint_range(self) -> (f64, f64) {
        match self {
            BridgeRole::Ttl => TTL_SETPOINTS,
            BridgeRole::Dds => DDS_SETPOINTS,
        }
    }

    fn performs(self, action: &Action) -> bool {
        match self {
            BridgeRole::Ttl => true,
            BridgeRole::Dds => !matches!(action, Action::Digital { .. }),
        }
    }

    fn actions(self) -> &'static str {
        match self {
            BridgeRole::Ttl => "Digital, Pulse, Acquire",
            BridgeRole::Dds => "Pulse, Acquire",
        }
    }
}

/// Settings of a [`BridgeDevice`].
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeOptions {
    /// Where the card is.
    pub endpoint: Endpoint,
    /// Device time resolution; must be a whole number of card ticks.
    pub clock_period_ns: Nanos,
    /// What the card drives.
    pub role: BridgeRole,
    /// Pulse setpoint × `value_scale` = the card's `value` (must fit an `i32`).
    pub value_scale: f64,
    /// Bound on connecting and the `Hello` exchange (and on `program` waiting for the session).
    pub connect_timeout_ms: u64,
    /// Bound on each answer from the card, and on a shot's report after its end.
    pub reply_timeout_ms: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Link retransmission timeout.
    pub retransmit_ms: u64,
    /// Retransmissions before the link is down.
    pub max_retries: u8,
    /// Host send window (frames, 1 ..= 32).
    pub window: usize,
    /// Longest wait between reconnection attempts.
    pub backoff_max_ms: u64,
}

impl BridgeOptions {
    /// Defaults for `endpoint`: 10 ns period, TTL, scale 1e6, connect 2 s, reply 1 s, heartbeat 100 ms,
    /// retransmit 50 ms, 5 retries, window 8, backoff up to 2 s.
    pub fn new(endpoint: Endpoint) -> Self {
        let s = SessionConfig::new(endpoint);
        Self {
            endpoint: s.endpoint,
            clock_period_ns: 10,
            role: BridgeRole::Ttl,
            value_scale: 1e6,
            connect_timeout_ms: s.connect_timeout_ms,
            reply_timeout_ms: s.reply_timeout_ms,
            heartbeat_ms: s.heartbeat_ms,
            retransmit_ms: s.retransmit_ms,
            max_retries: s.max_retries,
            window: s.window,
            backoff_max_ms: s.backoff_max_ms,
        }
    }

    fn session(&self) -> SessionConfig {
        SessionConfig {
            endpoint: self.endpoint.clone(),
            connect_timeout_ms: self.connect_timeout_ms,
            reply_timeout_ms: self.reply_timeout_ms,
            heartbeat_ms: self.heartbeat_ms,
            retransmit_ms: self.retransmit_ms,
            max_retries: self.max_retries,
            window: self.window,
            backoff_max_ms: self.backoff_max_ms,
        }
    }
}

const NOT_APPLIED: Nanos = Nanos::MAX;

struct Cached {
    timeline: DeviceTimeline,
    timeline_id: u32,
    events: Vec<shotline_firmware_bridge::WireEvent>,
    epoch: u64,
}

/// A timing card behind the firmware bridge.
pub struct BridgeDevice {
    info: DeviceInfo,
    options: BridgeOptions,
    index: u16,
    world: Option<(SimWorld, usize)>,
    lifecycle: Lifecycle,
    session: Session,
    cache: Option<Cached>,
    next_timeline_id: u32,
    uploads: u64,
    /// Number of the last trigger sent to the session: unique for the device's lifetime, so a late
    /// report of an earlier (failed, abandoned) shot never matches the current one even when the
    /// shot clock reuses shot numbers (every run counts from 0).
    trigger_id: u64,
    applied: Vec<Nanos>,
    acquired: Readout,
    card: Option<CardInfo>,
}

impl std::fmt::Debug for BridgeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeDevice")
            .field("name", &self.info.name)
            .field("endpoint", &self.options.endpoint)
            .field("state", &self.lifecycle.state())
            .finish_non_exhaustive()
    }
}

impl BridgeDevice {
    /// A device `name` (number `index` of its backend) on the card at `options.endpoint`. Starts the
    /// session thread at once; connecting happens in the background. With `world`, the programmed events
    /// also act on the simulated apparatus (as a simulated device with that coupling would).
    pub fn new(
        name: &str,
        options: BridgeOptions,
        index: u16,
        world: Option<(SimWorld, Coupling)>,
    ) -> Result<Self, DeviceError> {
        if !(options.value_scale.is_finite() && options.value_scale > 0.0) {
            return Err(DeviceError::Fault {
                device: name.to_string(),
                reason: format!(
                    "value_scale {} must be a finite number > 0",
                    options.value_scale
                ),
            });
        }
        if options.clock_period_ns == 0 {
            return Err(DeviceError::Fault {
                device: name.to_string(),
                reason: "clock_period_ns 0 must be at least 1".into(),
            });
        }
        let session = Session::start(options.session()).map_err(|e| DeviceError::Fault {
            device: name.to_string(),
            reason: e.to_string(),
        })?;
        let world = world.map(|(w, c)| {
            let slot = w.attach(name, c);
            (w, slot)
        });
        Ok(Self {
            info: DeviceInfo {
                name: name.to_string(),
                driver: options.role.driver().to_string(),
                clock_period_ns: options.clock_period_ns,
                channels: 0,
                simulated: false,
                setpoint_range: options.role.setpoint_range(),
            },
            index,
            world,
            lifecycle: Lifecycle::default(),
            session,
            cache: None,
            next_timeline_id: 1,
            uploads: 0,
            trigger_id: 0,
            applied: Vec::new(),
            acquired: Readout::new(),
            card: None,
            options,
        })
    }

    /// The session (status for logs and tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A view of the session's status to keep apart from the device (for operators).
    pub fn status_handle(&self) -> super::session::StatusHandle {
        self.session.status_handle()
    }

    /// Timelines really uploaded (identical re-programs are skipped).
    pub fn uploads(&self) -> u64 {
        self.uploads
    }

    fn fault(&self, reason: impl Into<String>) -> DeviceError {
        DeviceError::Fault {
            device: self.info.name.clone(),
            reason: reason.into(),
        }
    }

    fn session_fault(&self, e: SessionError) -> DeviceError {
        self.fault(e.to_string())
    }

    fn step(&mut self, t: Transition) -> Result<(), DeviceError> {
        self.lifecycle.step(&self.info.name, t)
    }

    fn fail(&mut self, e: DeviceError) -> DeviceError {
        let _ = self.step(Transition::Fail);
        e
    }

    fn reply_timeout(&self) -> Duration {
        Duration::from_millis(self.options.reply_timeout_ms)
    }

    fn check_actions(&self, timeline: &DeviceTimeline) -> Result<(), DeviceError> {
        let role = self.options.role;
        check_actions(&self.info, timeline, |a| role.performs(a), role.actions())
    }

    /// Validates and converts `timeline` for `card`.
    fn convert(
        &mut self,
        timeline: &DeviceTimeline,
        card: CardInfo,
    ) -> Result<Vec<shotline_firmware_bridge::WireEvent>, DeviceError> {
        let scale = TickScale::new(self.options.clock_period_ns, card.clock_hz)
            .map_err(|e| self.fault(format!("card {}: {e}", self.options.endpoint)))?;
        self.info.channels = card.channels;
        timeline.validate(self.info.clock_period_ns, card.channels)?;
        self.check_actions(timeline)?;
        if timeline.events.len() > card.max_events as usize {
            return Err(self.fault(format!(
                "timeline of {} events exceeds the card's capacity of {} events",
                timeline.events.len(),
                card.max_events
            )));
        }
        timeline
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| to_wire(i, e, scale, self.options.value_scale))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| self.fault(e))
    }

    /// Uploads `events` as a new timeline id; `Err(true)` when the card refused the program.
    fn upload(
        &mut self,
        events: &[shotline_firmware_bridge::WireEvent],
    ) -> Result<(u32, u64), (bool, DeviceError)> {
        // A card may still be armed (or playing) from before a reconnect or a lost disarm; an upload is refused
        // there. Abort is harmless in every other state.
        if let Err(e) = self.session.request(Request::Abort, self.reply_timeout()) {
            return Err((false, self.session_fault(e)));
        }
        // The epoch before the upload: if the card loses its timeline while (or right after) it is
        // uploaded, the cache is stale and the next arm uploads again.
        let epoch = self.session.status().epoch;
        let id = self.next_timeline_id;
        self.next_timeline_id = self.next_timeline_id.checked_add(1).unwrap_or(1);
        let rounds = 1 + events.len() as u64 / (44 * self.options.window.max(1) as u64);
        let timeout = Duration::from_millis(self.options.reply_timeout_ms.saturating_mul(rounds));
        let r = self.session.request(
            Request::Upload {
                timeline_id: id,
                events: events.to_vec(),
            },
            timeout,
        );
        match r {
            Ok(_) => Ok((id, epoch)),
            Err(e @ SessionError::Card { .. }) => Err((true, self.session_fault(e))),
            Err(e) => Err((false, self.session_fault(e))),
        }
    }

    fn cache_valid(&self) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|c| c.epoch == self.session.status().epoch)
    }

    fn shot_fault(&mut self, shot: u64, what: String) -> DeviceError {
        let e = self.fault(format!(
            "card {}: {what} during shot {shot}",
            self.options.endpoint
        ));
        self.fail(e)
    }
}

impl Device for BridgeDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn program(&mut self, timeline: &DeviceTimeline) -> Result<bool, DeviceError> {
        self.step(Transition::BeginProgram)?;
        let timeout = Duration::from_millis(self.options.connect_timeout_ms);
        let card = match self.session.wait_connected(timeout) {
            Ok(c) => c,
            Err(e) => {
                let e = self.session_fault(e);
                return Err(self.fail(e));
            }
        };
        self.card = Some(card);
        let events = match self.convert(timeline, card) {
            Ok(ev) => ev,
            Err(e) => {
                // A refused program leaves the device without one, as before.
                self.cache = None;
                let _ = self.step(Transition::Abort);
                return Err(e);
            }
        };
        let same = self.cache.as_ref().is_some_and(|c| c.timeline == *timeline);
        if same && self.cache_valid() {
            self.step(Transition::ProgramDone)?;
            return Ok(false);
        }
        self.cache = None;
        let (timeline_id, epoch) = match self.upload(&events) {
            Ok(r) => r,
            Err((refused, e)) => {
                let _ = self.step(if refused {
                    Transition::Abort
                } else {
                    Transition::Fail
                });
                return Err(e);
            }
        };
        self.uploads += 1;
        if let Some((w, slot)) = &self.world {
            w.set_program(*slot, &timeline.events);
        }
        self.applied.clear();
        self.applied.resize(events.len(), NOT_APPLIED);
        self.cache = Some(Cached {
            timeline: timeline.clone(),
            timeline_id,
            events,
            epoch,
        });
        self.step(Transition::ProgramDone)?;
        Ok(true)
    }

    fn arm(&mut self) -> Result<(), DeviceError> {
        self.lifecycle
            .check(Transition::Arm)
            .map_err(|e| e.for_device(&self.info.name))?;
        let Some(cached) = self.cache.as_ref() else {
            let e = self.fault("arm without an uploaded program (program it again)");
            return Err(self.fail(e));
        };
        let (mut id, total) = (cached.timeline_id, cached.events.len() as u32);
        if !self.cache_valid() {
            // The card lost its timeline since (reconnect, firmware reset, watchdog): upload again.
            let events = cached.events.clone();
            match self.upload(&events) {
                Ok((new_id, epoch)) => {
                    id = new_id;
                    if let Some(c) = self.cache.as_mut() {
                        c.timeline_id = new_id;
                        c.epoch = epoch;
                    }
                    self.uploads += 1;
                }
                Err((_, e)) => return Err(self.fail(e)),
            }
        }
        let request = Request::Arm {
            timeline_id: id,
            events_total: total,
        };
        if let Err(e) = self.session.request(request, self.reply_timeout()) {
            let e = self.session_fault(e);
            return Err(self.fail(e));
        }
        if let Some((w, _)) = &self.world {
            if let Err(e) = w.prepare(&self.info.name) {
                return Err(self.fail(e));
            }
        }
        self.session.set_notify(std::thread::current());
        self.step(Transition::Arm)
    }

    fn start_shot(&mut self, shot: &ShotContext) -> Result<(), DeviceError> {
        self.step(Transition::StartShot)?;
        self.applied.fill(NOT_APPLIED);
        self.acquired.clear();
        // Reports of earlier (failed or timed-out) shots are stale now.
        while self.session.next_report().is_some() {}
        if let Some((w, _)) = &self.world {
            w.begin_shot(shot, &self.info.name)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        _index: usize,
        event: &Event,
        shot: &ShotContext,
    ) -> Result<(), DeviceError> {
        self.lifecycle.require_running(&self.info.name, "apply")?;
        match &self.world {
            Some((w, slot)) => w.on_event(*slot, event, shot, &self.info.name),
            None => Ok(()),
        }
    }

    fn end_shot(&mut self, shot: &ShotContext, out: &mut Readout) -> Result<(), DeviceError> {
        self.lifecycle
            .require_running(&self.info.name, "end_shot")?;
        let id = self.trigger_id;
        let deadline = monotonic_ns().saturating_add(self.options.reply_timeout_ms * 1_000_000);
        loop {
            while let Some(r) = self.session.next_report() {
                match r {
                    ShotReport::Applied {
                        shot: s,
                        event,
                        host_ns,
                    } if s == id => {
                        if let Some(slot) = self.applied.get_mut(event as usize) {
                            *slot = host_ns;
                        }
                    }
                    ShotReport::Acquired {
                        shot: s,
                        channel,
                        offset,
                        sum,
                    } if s == id => {
                        let last = self
                            .acquired
                            .iter_mut()
                            .rev()
                            .find(|v| v.channel == channel);
                        match last {
                            Some(v) if offset > 0 => v.value = v.value.saturating_add(sum),
                            _ => {
                                let _ = self.acquired.push(ReadoutValue {
                                    device: self.index,
                                    channel,
                                    value: sum,
                                });
                            }
                        }
                    }
                    ShotReport::Done { shot: s } if s == id => {
                        for v in &self.acquired {
                            let _ = out.push(*v);
                        }
                        return self.step(Transition::EndShot);
                    }
                    ShotReport::Fault { shot: s, fault } if s.is_none() || s == Some(id) => {
                        return Err(self.shot_fault(shot.shot, fault.describe()));
                    }
                    _ => {}
                }
            }
            let now = monotonic_ns();
            if now >= deadline {
                let e = self.fault(format!(
                    "card {} did not report shot {} within {} ms",
                    self.options.endpoint, shot.shot, self.options.reply_timeout_ms
                ));
                return Err(self.fail(e));
            }
            std::thread::park_timeout(Duration::from_nanos((deadline - now).min(5_000_000)));
        }
    }

    fn safe_state(&mut self) -> Result<(), DeviceError> {
        let _ = self.step(Transition::Abort);
        if let Some((w, _)) = &self.world {
            w.reset();
        }
        // The card's Safe state discards its timeline.
        self.cache = None;
        match self
            .session
            .request(Request::SafeState, self.reply_timeout())
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let watchdog = self
                    .card
                    .or(self.session.status().card)
                    .map(|c| format!("its watchdog of {} ms", c.watchdog_ms))
                    .unwrap_or_else(|| "its watchdog".into());
                Err(self.fault(format!(
                    "could not command the safe state ({e}); {watchdog} drives it safe once the host is silent"
                )))
            }
        }
    }

    fn disarm(&mut self) -> Result<(), DeviceError> {
        self.step(Transition::Disarm)?;
        if !self.session.status().connected {
            return Ok(());
        }
        match self.session.request(Request::Abort, self.reply_timeout()) {
            Ok(Reply::Status(_)) | Ok(Reply::Done) => Ok(()),
            Err(e) => {
                let e = self.session_fault(e);
                Err(self.fail(e))
            }
        }
    }

    fn reset(&mut self) -> Result<(), DeviceError> {
        let _ = self
            .session
            .request(Request::SafeState, self.reply_timeout());
        let _ = self.step(Transition::Reset);
        self.cache = None;
        if let Some((w, slot)) = &self.world {
            w.set_program(*slot, &[]);
            w.reset();
        }
        self.session
            .request(Request::Reconnect, self.reply_timeout())
            .map(|_| ())
            .map_err(|e| self.session_fault(e))
    }

    fn state(&self) -> DeviceState {
        self.lifecycle.state()
    }

    fn hardware_timed(&self) -> bool {
        true
    }

    fn trigger(&mut self, shot: &ShotContext, t0_ns: Nanos) -> Result<(), DeviceError> {
        self.lifecycle.require_running(&self.info.name, "trigger")?;
        self.trigger_id = self.trigger_id.wrapping_add(1);
        match self.session.trigger(self.trigger_id, t0_ns) {
            Ok(()) => Ok(()),
            Err(f) => Err(self.shot_fault(shot.shot, f.describe())),
        }
    }

    fn applied_times(
        &mut self,
        _shot: &ShotContext,
        out: &mut dyn FnMut(u32, Nanos),
    ) -> Result<(), DeviceError> {
        for (i, t) in self.applied.iter().enumerate() {
            if *t != NOT_APPLIED {
                out(i as u32, *t);
            }
        }
        Ok(())
    }
}

impl Drop for BridgeDevice {
    fn drop(&mut self) {
        let _ = self.step(Transition::Abort);
        if let Some((w, _)) = &self.world {
            w.reset();
        }
        // Dropping the session commands the safe state (bounded) and stops its thread.
    }
}
