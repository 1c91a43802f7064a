//! Semantic validation: ranges, uniqueness, references between sections.

use std::collections::HashSet;
use std::fmt::Display;

use crate::backend::{
    BackendSection, BridgeRole, BridgeSection, BridgeTransport, DeviceDriver, DeviceSection,
};
use crate::drivers::{DriverCatalog, OutputKind};
use crate::error::ConfigIssue;
use crate::schema::{Config, TlsMode};

/// Room for the fixed fields of one job summary in a `jobs` answer (ids, names, status, detail, times).
pub const JOB_SUMMARY_FIXED_BYTES: u64 = 8192;

/// Longest accepted `sleep_margin_ns` (one second).
const MAX_SLEEP_MARGIN_NS: u64 = 1_000_000_000;
/// Longest shot the clock spins through (`shotline_hal::realtime::MAX_SPIN_SHOT_NS`, 100 ms).
const MAX_SPIN_SHOT_NS: u64 = 100_000_000;
/// Longest accepted `lead_ns` (ten seconds).
const MAX_LEAD_NS: u64 = 10_000_000_000;
/// Longest accepted `cycle_ns` (one hour).
const MAX_CYCLE_NS: u64 = 3_600_000_000_000;
/// Largest accepted `slack_ns` (one second; far below `i64::MAX`, so lateness comparisons never wrap).
const MAX_SLACK_NS: u64 = 1_000_000_000;
/// Longest accepted `sequence.gap_ns` (one second).
const MAX_GAP_NS: u64 = 1_000_000_000;
/// Longest accepted load pulse and camera exposure (ten seconds).
const MAX_STEP_NS: u64 = 10_000_000_000;
/// Highest accepted `realtime.cpu` (the kernel's `CPU_SETSIZE` is 1024).
const MAX_CPU: usize = 1023;

/// Collects issues while walking the configuration.
#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue::new(path, message));
    }

    fn range<T: PartialOrd + Display + Copy>(&mut self, path: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.push(
                path,
                format!("value {value} is out of range, allowed: {min}..={max}"),
            );
        }
    }

    fn at_least<T: PartialOrd + Display + Copy>(&mut self, path: &str, value: T, min: T) {
        if value < min {
            self.push(
                path,
                format!("value {value} is too small, it must be at least {min}"),
            );
        }
    }

    fn positive_finite(&mut self, path: &str, value: f64) {
        if !value.is_finite() || value <= 0.0 {
            self.push(
                path,
                format!("value {value} is not allowed, it must be a finite number > 0"),
            );
        }
    }
}

impl Config {
    /// Checks everything the schema alone cannot express; returns every problem found
    /// (paths only: [`crate::parse_str`] adds line and column). Devices may name the built-in drivers only,
    /// backends the built-in models ([`crate::BUILTIN_MODELS`]).
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        self.validate_with_plugins(&DriverCatalog::builtin(), crate::BUILTIN_MODELS)
    }

    /// [`Config::validate`] with the drivers of `drivers` (the built-in ones and those an embedder
    /// registered).
    pub fn validate_with(&self, drivers: &DriverCatalog) -> Result<(), Vec<ConfigIssue>> {
        self.validate_with_plugins(drivers, crate::BUILTIN_MODELS)
    }

    /// [`Config::validate`] for a runtime that knows the models `models`: a backend naming another one is
    /// refused, listing them.
    pub fn validate_with_models(&self, models: &[&str]) -> Result<(), Vec<ConfigIssue>> {
        self.validate_with_plugins(&DriverCatalog::builtin(), models)
    }

    /// [`Config::validate`] for a runtime that knows the drivers of `drivers` and the models `models` (the
    /// built-in ones and those an embedder registered).
    pub fn validate_with_plugins(
        &self,
        drivers: &DriverCatalog,
        models: &[&str],
    ) -> Result<(), Vec<ConfigIssue>> {
        let mut v = Issues::default();
        self.validate_service(&mut v);
        if self.backends.is_empty() {
            v.push("backends", "at least one backend is required");
        }
        let mut names = HashSet::new();
        for (i, backend) in self.backends.iter().enumerate() {
            let path = format!("backends[{i}]");
            if !names.insert(backend.name.as_str()) {
                v.push(
                    format!("{path}.name"),
                    format!("duplicate backend name \"{}\"", backend.name),
                );
            }
            validate_backend(&mut v, &path, backend, drivers, models);
        }
        if v.0.is_empty() {
            Ok(())
        } else {
            Err(v.0)
        }
    }

    fn validate_service(&self, v: &mut Issues) {
        let tls = &self.tls;
        match tls.mode {
            TlsMode::Files => {
                if tls.cert.is_none() {
                    v.push("tls.cert", "required when tls.mode is \"files\"");
                }
                if tls.key.is_none() {
                    v.push("tls.key", "required when tls.mode is \"files\"");
                }
            }
            TlsMode::SelfSigned => {
                for (field, given) in [("cert", &tls.cert), ("key", &tls.key)] {
                    if given.is_some() {
                        v.push(
                            format!("tls.{field}"),
                            "only allowed when tls.mode is \"files\" (mode is \"self_signed\")",
                        );
                    }
                }
                if tls.names.is_empty() {
                    v.push(
                        "tls.names",
                        "at least one name is required for the self-signed certificate",
                    );
                }
            }
        }
        v.range("auth.token_ttl_s", self.auth.token_ttl_s, 60, 31_536_000);
        let l = &self.limits;
        v.range(
            "limits.max_frame_bytes",
            l.max_frame_bytes,
            1024,
            268_435_456,
        );
        v.range(
            "limits.max_streams_per_connection",
            l.max_streams_per_connection,
            1,
            10_000,
        );
        v.at_least(
            "limits.max_connections_per_user",
            l.max_connections_per_user,
            1,
        );
        v.at_least(
            "limits.max_queued_jobs_per_user",
            l.max_queued_jobs_per_user,
            1,
        );
        v.at_least("limits.request_timeout_ms", l.request_timeout_ms, 1);
        v.range("limits.max_tags", l.max_tags, 0, 256);
        v.range("limits.max_tag_bytes", l.max_tag_bytes, 1, 1024);
        v.range("limits.max_qobj_id_bytes", l.max_qobj_id_bytes, 1, 1024);
        v.range(
            "limits.max_experiment_name_bytes",
            l.max_experiment_name_bytes,
            1,
            1024,
        );
        v.range(
            "limits.max_shots_per_job",
            l.max_shots_per_job,
            1,
            100_000_000,
        );
        v.range(
            "limits.max_job_duration_s",
            l.max_job_duration_s,
            1,
            604_800,
        );
        v.range(
            "limits.max_response_bytes",
            l.max_response_bytes,
            65_536,
            8_388_608,
        );
        // The largest job summary of a listing (tags, qobj_id and the fixed fields) must fit in one answer, so
        // that every page holds at least one job.
        let summary = u64::from(l.max_tags) * (u64::from(l.max_tag_bytes) + 5)
            + u64::from(l.max_qobj_id_bytes)
            + JOB_SUMMARY_FIXED_BYTES;
        if summary > l.max_response_bytes {
            v.push(
                "limits.max_response_bytes",
                format!(
                    "value {} is too small for one job summary of up to {summary} bytes (limits.max_tags x \
                     (limits.max_tag_bytes + 5) + limits.max_qobj_id_bytes + {JOB_SUMMARY_FIXED_BYTES}); raise it \
                     or lower those limits",
                    l.max_response_bytes
                ),
            );
        }
        v.range(
            "limits.max_unauthenticated_connections",
            l.max_unauthenticated_connections,
            1,
            100_000,
        );
        v.range(
            "limits.max_unauthenticated_streams",
            l.max_unauthenticated_streams,
            1,
            10_000,
        );
        v.range(
            "limits.max_unauthenticated_frame_bytes",
            l.max_unauthenticated_frame_bytes,
            1024,
            268_435_456,
        );
        v.range(
            "limits.unauthenticated_timeout_ms",
            l.unauthenticated_timeout_ms,
            100,
            600_000,
        );
        v.range("limits.idle_timeout_ms", l.idle_timeout_ms, 1000, 600_000);
        v.range(
            "auth.registrations_per_address",
            self.auth.registrations_per_address,
            1,
            10_000,
        );
        v.at_least("supervision.period_ms", self.supervision.period_ms, 1);
        v.range("recovery.max_attempts", self.recovery.max_attempts, 1, 100);
        v.range(
            "recovery.lock_lease_ms",
            self.recovery.lock_lease_ms,
            1000,
            600_000,
        );
        v.range(
            "auth.login_attempts_per_user",
            self.auth.login_attempts_per_user,
            1,
            10_000,
        );
        v.range(
            "auth.login_attempts_per_address",
            self.auth.login_attempts_per_address,
            1,
            100_000,
        );
        v.at_least(
            "supervision.call_timeout_ms",
            self.supervision.call_timeout_ms,
            1,
        );
        v.at_least(
            "persistence.queue_capacity",
            self.persistence.queue_capacity,
            1,
        );
        match &self.store.postgres {
            Some(url) => {
                if let Some(problem) = crate::store::postgres_url_problem(url) {
                    v.push("store.postgres", problem);
                }
            }
            None if self.store.allow_synchronous_commit_off => v.push(
                "store.allow_synchronous_commit_off",
                "only applies with store.postgres (the SQLite store always commits with synchronous=FULL)",
            ),
            None => {}
        }
        if self.persistence.file.as_os_str().is_empty() {
            v.push("persistence.file", "must not be empty");
        }
    }
}

fn valid_backend_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn validate_backend(
    v: &mut Issues,
    path: &str,
    b: &BackendSection,
    drivers: &DriverCatalog,
    models: &[&str],
) {
    if !valid_backend_name(&b.name) {
        v.push(
            format!("{path}.name"),
            format!(
                "invalid backend name \"{}\": use 1 to 32 characters from a-z, 0-9, _ and -",
                b.name
            ),
        );
    }
    if !models.contains(&b.model.as_str()) {
        v.push(
            format!("{path}.model"),
            format!(
                "unknown model \"{}\"; registered models: {}",
                b.model,
                models.join(", ")
            ),
        );
    }
    v.range(&format!("{path}.max_shots"), b.max_shots, 1, 1_000_000);
    v.range(
        &format!("{path}.max_experiments"),
        b.max_experiments,
        1,
        1000,
    );
    v.range(&format!("{path}.max_atoms"), b.max_atoms, 1, 500);

    let t = &b.timing;
    v.range(&format!("{path}.timing.lead_ns"), t.lead_ns, 0, MAX_LEAD_NS);
    v.range(
        &format!("{path}.timing.cycle_ns"),
        t.cycle_ns,
        0,
        MAX_CYCLE_NS,
    );
    v.range(
        &format!("{path}.timing.slack_ns"),
        t.slack_ns,
        0,
        MAX_SLACK_NS,
    );
    if let Some(cpu) = t.realtime.cpu {
        v.range(&format!("{path}.timing.realtime.cpu"), cpu, 0, MAX_CPU);
    }
    v.range(
        &format!("{path}.timing.sleep_margin_ns"),
        t.sleep_margin_ns,
        0,
        MAX_SLEEP_MARGIN_NS,
    );
    v.range(&format!("{path}.timing.shot_ring"), t.shot_ring, 2, 1 << 20);
    v.range(
        &format!("{path}.timing.event_ring"),
        t.event_ring,
        2,
        1 << 22,
    );
    v.range(
        &format!("{path}.timing.realtime.priority"),
        t.realtime.priority,
        1,
        99,
    );
    v.range(
        &format!("{path}.timing.spin_shots_up_to_ns"),
        t.spin_shots_up_to_ns,
        0,
        MAX_SPIN_SHOT_NS,
    );

    let mut devices = HashSet::new();
    for (i, d) in b.devices.iter().enumerate() {
        let dpath = format!("{path}.devices[{i}]");
        if d.name.is_empty() {
            v.push(format!("{dpath}.name"), "must not be empty");
        } else if !devices.insert(d.name.as_str()) {
            v.push(
                format!("{dpath}.name"),
                format!("duplicate device name \"{}\"", d.name),
            );
        }
        v.range(
            &format!("{dpath}.clock_period_ns"),
            d.clock_period_ns,
            1,
            1_000_000,
        );
        if !drivers.contains(&d.driver) {
            v.push(
                format!("{dpath}.driver"),
                format!(
                    "unknown driver \"{}\", registered drivers: {}",
                    d.driver,
                    drivers.names()
                ),
            );
        }
        let bridge = d.driver == DeviceDriver::Bridge;
        match (bridge, &d.bridge) {
            (true, None) => v.push(
                format!("{dpath}.bridge"),
                "required for driver bridge (transport, address or path, role, ...)",
            ),
            (true, Some(br)) => validate_bridge(v, &format!("{dpath}.bridge"), br),
            (false, Some(_)) if drivers.contains(&d.driver) => v.push(
                format!("{dpath}.bridge"),
                format!("only allowed with driver bridge, not {}", d.driver),
            ),
            (_, _) => {}
        }
        if !d.settings.is_empty() && crate::drivers::BUILTIN_DRIVERS.contains(&d.driver.as_str()) {
            v.push(
                format!("{dpath}.settings"),
                format!(
                    "driver {} takes no settings (only drivers registered by an embedder do)",
                    d.driver
                ),
            );
        }
    }

    let s = &b.sequence;
    let sp = format!("{path}.sequence");
    v.range(&format!("{sp}.gap_ns"), s.gap_ns, 0, MAX_GAP_NS);
    v.range(
        &format!("{sp}.load.duration_ns"),
        s.load.duration_ns,
        1,
        MAX_STEP_NS,
    );
    v.range(
        &format!("{sp}.measure.exposure_ns"),
        s.measure.exposure_ns,
        1,
        MAX_STEP_NS,
    );
    v.positive_finite(
        &format!("{sp}.rlx.rabi_frequency_hz"),
        s.rlx.rabi_frequency_hz,
    );
    v.positive_finite(&format!("{sp}.rlz.rate_hz"), s.rlz.rate_hz);
    v.positive_finite(&format!("{sp}.rlz2.rate_hz"), s.rlz2.rate_hz);

    use OutputKind::{Camera, Dds, Ttl};
    let steps: [(&str, &str, &[OutputKind]); 5] = [
        ("load", &s.load.device, &[Ttl, Dds]),
        ("rlx", &s.rlx.device, &[Dds]),
        ("rlz", &s.rlz.device, &[Dds]),
        ("rlz2", &s.rlz2.device, &[Dds]),
        ("measure", &s.measure.device, &[Camera]),
    ];
    for (step, name, kinds) in steps {
        let field = format!("{sp}.{step}.device");
        let allowed: Vec<String> = kinds.iter().flat_map(|k| spellings(drivers, *k)).collect();
        match b.devices.iter().find(|d| d.name == name) {
            None => {
                let known: Vec<&str> = b.devices.iter().map(|d| d.name.as_str()).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                v.push(
                    field,
                    format!("unknown device \"{name}\", devices of this backend: {known}"),
                );
            }
            Some(d) => {
                // A device with an unknown driver is reported at its `driver` already.
                let Some(outputs) = outputs_of(drivers, d) else {
                    continue;
                };
                if !kinds.iter().any(|k| outputs.contains(k)) {
                    v.push(
                        field,
                        format!(
                            "device \"{name}\" is {}, but {step} needs one of: {}",
                            describe(d),
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// What the device `d` can do in the sequence, whatever its driver (`None`: the driver is unknown).
fn outputs_of(drivers: &DriverCatalog, d: &DeviceSection) -> Option<Vec<OutputKind>> {
    if d.driver == DeviceDriver::Bridge {
        return Some(vec![match d.bridge.as_ref().map(|b| b.role) {
            Some(BridgeRole::Ttl) => OutputKind::Ttl,
            _ => OutputKind::Dds,
        }]);
    }
    drivers.get(d.driver.as_str()).map(|s| s.outputs.clone())
}

/// The ways of configuring a device that can do `kind`.
fn spellings(drivers: &DriverCatalog, kind: OutputKind) -> Vec<String> {
    let mut names: Vec<String> = drivers.offering(kind).map(str::to_owned).collect();
    match kind {
        OutputKind::Ttl => names.push("bridge with role ttl".to_owned()),
        OutputKind::Dds => names.push("bridge with role dds".to_owned()),
        OutputKind::Camera => {}
    }
    names
}

fn describe(d: &DeviceSection) -> String {
    match (d.driver == DeviceDriver::Bridge, d.bridge.as_ref()) {
        (true, Some(b)) => format!(
            "a bridge with role {}",
            match b.role {
                BridgeRole::Ttl => "ttl",
                BridgeRole::Dds => "dds",
            }
        ),
        (_, _) => format!("driver {}", d.driver),
    }
}

/// Line speeds a serial bridge accepts.
pub const BRIDGE_BAUDS: [u32; 12] = [
    9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 500_000, 921_600, 1_000_000,
    2_000_000, 4_000_000,
];

fn validate_bridge(v: &mut Issues, path: &str, b: &BridgeSection) {
    match b.transport {
        BridgeTransport::Tcp => {
            let ok = b.address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                v.push(
                    format!("{path}.address"),
                    format!(
                        "\"{}\" is not a card address: transport tcp needs host:port (e.g. 192.168.1.50:7700)",
                        b.address
                    ),
                );
            }
        }
        BridgeTransport::Serial => {
            if b.path.is_empty() {
                v.push(
                    format!("{path}.path"),
                    "transport serial needs the device path (e.g. /dev/ttyACM0)",
                );
            }
            if !BRIDGE_BAUDS.contains(&b.baud) {
                let allowed: Vec<String> = BRIDGE_BAUDS.iter().map(u32::to_string).collect();
                v.push(
                    format!("{path}.baud"),
                    format!(
                        "{} is not a supported line speed, allowed: {}",
                        b.baud,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
    v.positive_finite(&format!("{path}.value_scale"), b.value_scale);
    v.range(
        &format!("{path}.connect_timeout_ms"),
        b.connect_timeout_ms,
        1,
        600_000,
    );
    v.range(
        &format!("{path}.reply_timeout_ms"),
        b.reply_timeout_ms,
        1,
        600_000,
    );
    v.range(&format!("{path}.heartbeat_ms"), b.heartbeat_ms, 1, 10_000);
    v.range(&format!("{path}.retransmit_ms"), b.retransmit_ms, 1, 10_000);
    v.range(&format!("{path}.max_retries"), b.max_retries, 1, 50);
    v.range(&format!("{path}.window"), b.window, 1, 32);
    v.range(
        &format!("{path}.backoff_max_ms"),
        b.backoff_max_ms,
        50,
        600_000,
    );
}
