//! Semantic validation: ranges, uniqueness, references between sections.

use std::collections::HashSet;
use std::fmt::Display;

use crate::backend::{BackendSection, DeviceDriver};
use crate::error::ConfigIssue;
use crate::schema::{Config, TlsMode};

/// Longest accepted `sleep_margin_ns` (one second).
const MAX_SLEEP_MARGIN_NS: u64 = 1_000_000_000;

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
    /// (paths only: [`crate::parse_str`] adds line and column).
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
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
            validate_backend(&mut v, &path, backend);
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
        v.at_least("supervision.period_ms", self.supervision.period_ms, 1);
        v.range("recovery.max_attempts", self.recovery.max_attempts, 1, 100);
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

fn validate_backend(v: &mut Issues, path: &str, b: &BackendSection) {
    if !valid_backend_name(&b.name) {
        v.push(
            format!("{path}.name"),
            format!(
                "invalid backend name \"{}\": use 1 to 32 characters from a-z, 0-9, _ and -",
                b.name
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
    }

    let s = &b.sequence;
    let sp = format!("{path}.sequence");
    v.at_least(&format!("{sp}.load.duration_ns"), s.load.duration_ns, 1);
    v.at_least(
        &format!("{sp}.measure.exposure_ns"),
        s.measure.exposure_ns,
        1,
    );
    v.positive_finite(
        &format!("{sp}.rlx.rabi_frequency_hz"),
        s.rlx.rabi_frequency_hz,
    );
    v.positive_finite(&format!("{sp}.rlz.rate_hz"), s.rlz.rate_hz);
    v.positive_finite(&format!("{sp}.rlz2.rate_hz"), s.rlz2.rate_hz);

    use DeviceDriver::{SimCamera, SimDds, SimTtl};
    let steps: [(&str, &str, &[DeviceDriver]); 5] = [
        ("load", &s.load.device, &[SimTtl, SimDds]),
        ("rlx", &s.rlx.device, &[SimDds]),
        ("rlz", &s.rlz.device, &[SimDds]),
        ("rlz2", &s.rlz2.device, &[SimDds]),
        ("measure", &s.measure.device, &[SimCamera]),
    ];
    for (step, name, drivers) in steps {
        let field = format!("{sp}.{step}.device");
        let allowed: Vec<&str> = drivers.iter().map(|d| d.as_str()).collect();
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
            Some(d) if !drivers.contains(&d.driver) => v.push(
                field,
                format!(
                    "device \"{name}\" has driver {}, but {step} needs one of: {}",
                    d.driver.as_str(),
                    allowed.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }
}
