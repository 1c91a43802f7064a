//! Integration tests of the shotline configuration: the shipped configs, located errors for
//! bad configs, file loading and robustness against arbitrary input.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use shotline_config::{
    load, parse_str, BackendModel, ConfigError, ConfigIssue, DeviceDriver, LogFormat, TlsMode,
    UnderflowPolicy, SIM_YAML,
};

/// A small valid config used as the base of the bad ones.
const BASE: &str = "\
service:
  data_dir: ./data
  listen: 127.0.0.1:7878
tls:
  mode: self_signed
backends:
  - name: qudit
    model: singlequdit
    timing:
      underflow_policy: record
      realtime: { enabled: false, priority: 80 }
    devices:
      - { name: mot, driver: sim_ttl, clock_period_ns: 10 }
      - { name: rf, driver: sim_dds, clock_period_ns: 1 }
      - { name: detuning, driver: sim_dds, clock_period_ns: 1 }
      - { name: interaction, driver: sim_dds, clock_period_ns: 1 }
      - { name: camera, driver: sim_camera, clock_period_ns: 1000 }
";

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn pos_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn replaced(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

/// Parses `text`, expects an `Invalid` error, and returns its issues.
fn issues(text: &str) -> Vec<ConfigIssue> {
    match parse_str(text, "bad.yaml") {
        Err(ConfigError::Invalid { origin, issues }) => {
            assert_eq!(origin, "bad.yaml");
            assert!(!issues.is_empty());
            issues
        }
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

/// Asserts that the only issue of `text` is at `path`, at the position of `needle`
/// (offset by `skip` characters), and that its message contains every `words`.
#[track_caller]
fn assert_issue(text: &str, path: &str, needle: &str, skip: usize, words: &[&str]) {
    let all = issues(text);
    assert_eq!(all.len(), 1, "expected one issue, got {all:#?}");
    let issue = &all[0];
    let (line, column) = pos_of(text, needle);
    assert_eq!(issue.path, path, "{issue:?}");
    assert_eq!(
        (issue.line, issue.column),
        (Some(line), Some(column + skip)),
        "{issue:?}"
    );
    for word in words {
        assert!(issue.message.contains(word), "{word:?} not in {issue:?}");
    }
}

#[test]
fn sim_yaml_parses_and_validates() {
    let config = parse_str(SIM_YAML, "sim.yaml").unwrap();
    assert_eq!(config.validate(), Ok(()));
    let b = &config.backends[0];
    assert_eq!(b.name, "singlequdit");
    assert_eq!(b.model, BackendModel::SingleQudit);
    assert_eq!(b.devices.len(), 5);
    assert_eq!(b.timing.underflow_policy, UnderflowPolicy::Record);
    assert!(
        !b.timing.realtime.enabled,
        "real-time must be off in sim.yaml"
    );
    assert_eq!(config.service.listen.to_string(), "127.0.0.1:7878");
    // Relative to configs/: the repository root's ./data.
    assert_eq!(config.db_path(), Path::new("../data").join("shotline.db"));
}

#[test]
fn lab_example_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab-example.yaml");
    let loaded = load(&path).unwrap();
    let c = &loaded.config;
    assert_eq!(c.tls.mode, TlsMode::Files);
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.data_dir(), Path::new("/var/lib/shotline"));
    assert_eq!(c.backends.len(), 2);
    // The minimal second backend takes the defaults: the simulated devices; the first one has its RF on a
    // timing card behind the bridge, the rest as the defaults.
    assert_eq!(c.backends[1].devices, shotline_config::default_devices());
    let first = &c.backends[0].devices;
    assert_eq!(first[1].driver, shotline_config::DeviceDriver::Bridge);
    for i in [0, 2, 3, 4] {
        assert_eq!(first[i], c.backends[1].devices[i]);
    }
    assert_eq!(c.backends[1].max_atoms, 20);
}

#[test]
fn minimal_config_takes_documented_defaults() {
    let c = parse_str(
        "service: {}\nbackends: [{name: a, model: singlequdit}]\n",
        "min.yaml",
    )
    .unwrap();
    assert_eq!(c.data_dir(), Path::new("./data"));
    assert_eq!(c.service.listen.to_string(), "127.0.0.1:7878");
    assert_eq!(c.auth.token_ttl_s, 86_400);
    assert_eq!(c.limits.max_frame_bytes, 8_388_608);
    assert_eq!(c.supervision.max_restarts, 3);
    assert_eq!(c.persistence.queue_capacity, 4096);
    assert_eq!(c.tls.names, vec!["localhost", "127.0.0.1"]);
    let b = &c.backends[0];
    assert_eq!(
        (b.max_shots, b.max_experiments, b.max_atoms),
        (1_000_000, 1000, 500)
    );
    assert_eq!(b.sequence.measure.device, "camera");
    assert_eq!(b.devices[4].driver, DeviceDriver::SimCamera);
    // The embedded default is exactly the documented defaults plus descriptive texts.
    let sim = parse_str(SIM_YAML, "sim.yaml").unwrap();
    assert_eq!(sim.backends[0].timing, b.timing);
    assert_eq!(sim.backends[0].sequence, b.sequence);
    assert_eq!(sim.limits, c.limits);
}

#[test]
fn unknown_top_level_key() {
    let text = format!("{BASE}colour: blue\n");
    assert_issue(
        &text,
        "colour",
        "colour:",
        0,
        &["unknown key \"colour\"", "service", "backends"],
    );
}

#[test]
fn unknown_nested_key_in_flow_mapping() {
    let text = replaced("priority: 80 }", "priority: 80, nice: 5 }");
    assert_issue(
        &text,
        "backends[0].timing.realtime.nice",
        "nice:",
        0,
        &["unknown key \"nice\"", "enabled, priority, cpu, mlock"],
    );
}

#[test]
fn unknown_nested_key_in_block_mapping() {
    let text = replaced(
        "  mode: self_signed\n",
        "  mode: self_signed\n  ca: x.pem\n",
    );
    assert_issue(
        &text,
        "tls.ca",
        "ca:",
        0,
        &["unknown key \"ca\"", "mode, cert, key, names"],
    );
}

#[test]
fn wrong_type_string_for_integer() {
    let text = replaced("clock_period_ns: 1000 }", "clock_period_ns: fast }");
    assert_issue(
        &text,
        "backends[0].devices[4].clock_period_ns",
        "fast",
        0,
        &["wrong type", "integer", "\"fast\""],
    );
}

#[test]
fn wrong_type_mapping_for_scalar() {
    let text = replaced("  - name: qudit\n", "  - name: { first: qudit }\n");
    assert_issue(
        &text,
        "backends[0].name",
        "{ first",
        0,
        &["wrong type", "mapping"],
    );
}

#[test]
fn bad_enum_value_lists_allowed_values() {
    let text = replaced("underflow_policy: record", "underflow_policy: sometimes");
    assert_issue(
        &text,
        "backends[0].timing.underflow_policy",
        "sometimes",
        0,
        &["unknown value \"sometimes\", expected one of: fail, record, abort"],
    );
    let display = parse_str(&text, "sim.yaml").unwrap_err().to_string();
    let (line, column) = pos_of(&text, "sometimes");
    assert_eq!(
        display,
        format!(
            "sim.yaml:{line}:{column}: backends[0].timing.underflow_policy: \
             unknown value \"sometimes\", expected one of: fail, record, abort"
        )
    );
}

#[test]
fn bad_driver_lists_allowed_drivers() {
    let text = replaced("driver: sim_camera", "driver: usb_camera");
    assert_issue(
        &text,
        "backends[0].devices[4].driver",
        "usb_camera",
        0,
        &["sim_ttl, sim_dds, sim_camera"],
    );
}

#[test]
fn out_of_range_number() {
    let text = replaced("clock_period_ns: 10 }", "clock_period_ns: 2000000 }");
    assert_issue(
        &text,
        "backends[0].devices[0].clock_period_ns",
        "2000000",
        0,
        &["2000000", "1..=1000000"],
    );
}

/// The backend lock's lease defaults to 30 s and is bounded on both sides (too short: renewals cannot keep
/// up; too long: a dead server's backend waits for ever).
#[test]
fn lock_lease_has_a_default_and_bounds() {
    let c = parse_str(BASE, "base.yaml").unwrap();
    assert_eq!(c.recovery.lock_lease_ms, 30_000);
    for bad in ["999", "600001"] {
        let text = format!("{BASE}recovery: {{ lock_lease_ms: {bad} }}\n");
        assert_issue(
            &text,
            "recovery.lock_lease_ms",
            bad,
            0,
            &[bad, "1000..=600000"],
        );
    }
    let text = format!("{BASE}recovery: {{ lock_lease_ms: 1000 }}\n");
    assert_eq!(
        parse_str(&text, "ok.yaml").unwrap().recovery.lock_lease_ms,
        1000
    );
}

/// Every timing value has an upper bound; the error names the path, the value and the limit.
#[test]
fn timing_values_have_upper_bounds_named_in_the_error() {
    let cases: [(&str, &str, &str); 5] = [
        ("lead_ns", "10000000001", "0..=10000000000"),
        ("cycle_ns", "3600000000001", "0..=3600000000000"),
        ("slack_ns", "18446744073709551615", "0..=1000000000"),
        ("sleep_margin_ns", "1000000001", "0..=1000000000"),
        ("shot_ring", "1048577", "2..=1048576"),
    ];
    for (key, value, limit) in cases {
        let text = replaced(
            "      underflow_policy: record\n",
            &format!("      underflow_policy: record\n      {key}: {value}\n"),
        );
        assert_issue(
            &text,
            &format!("backends[0].timing.{key}"),
            value,
            0,
            &[value, limit],
        );
    }
    let text = replaced(
        "      underflow_policy: record\n",
        "      underflow_policy: record\n      event_ring: 1\n",
    );
    assert_issue(
        &text,
        "backends[0].timing.event_ring",
        "event_ring: 1",
        12,
        &["2..=4194304"],
    );
    let text = replaced("priority: 80 }", "priority: 80, cpu: 5000 }");
    assert_issue(
        &text,
        "backends[0].timing.realtime.cpu",
        "5000",
        0,
        &["5000", "0..=1023"],
    );
    // The largest accepted values pass.
    let text = replaced(
        "      underflow_policy: record\n",
        "      underflow_policy: abort\n      lead_ns: 10000000000\n      cycle_ns: 3600000000000\n      slack_ns: 1000000000\n",
    );
    let config = parse_str(&text, "ok.yaml").unwrap();
    assert_eq!(
        config.backends[0].timing.underflow_policy,
        UnderflowPolicy::Abort
    );
}

#[test]
fn sequence_timing_values_have_upper_bounds() {
    let text = replaced(
        "    timing:\n",
        "    sequence:\n      gap_ns: 2000000000\n    timing:\n",
    );
    assert_issue(
        &text,
        "backends[0].sequence.gap_ns",
        "2000000000",
        0,
        &["2000000000", "0..=1000000000"],
    );
}

#[test]
fn realtime_priority_out_of_range() {
    let text = replaced("priority: 80", "priority: 0");
    assert_issue(
        &text,
        "backends[0].timing.realtime.priority",
        "priority: 0",
        10,
        &["1..=99"],
    );
}

#[test]
fn spin_through_shots_is_bounded() {
    let text = replaced(
        "underflow_policy: record\n",
        "underflow_policy: record\n      spin_shots_up_to_ns: 100000001\n",
    );
    assert_issue(
        &text,
        "backends[0].timing.spin_shots_up_to_ns",
        "spin_shots_up_to_ns: 100000001",
        21,
        &["0..=100000000", "100000001"],
    );
    let ok = replaced(
        "underflow_policy: record\n",
        "underflow_policy: record\n      spin_shots_up_to_ns: 100000000\n",
    );
    parse_str(&ok, "ok.yaml").unwrap();
    // It moved out of `timing.realtime` (it applies with or without real time): the old place is refused.
    let old = replaced(
        "priority: 80 }",
        "priority: 80, spin_shots_up_to_ns: 2000000 }",
    );
    assert!(parse_str(&old, "old.yaml").is_err());
}

#[test]
fn out_of_range_for_the_type_is_a_type_error() {
    let text = replaced("priority: 80", "priority: 300");
    assert_issue(
        &text,
        "backends[0].timing.realtime.priority",
        "300",
        0,
        &["0..=255", "\"300\""],
    );
}

#[test]
fn missing_required_backend_field() {
    let text = replaced("    model: singlequdit\n", "");
    assert_issue(
        &text,
        "backends[0].model",
        "name: qudit",
        0,
        &["missing required key \"model\""],
    );
}

#[test]
fn missing_required_top_level_section() {
    let text = BASE.replacen(
        "service:\n  data_dir: ./data\n  listen: 127.0.0.1:7878\n",
        "",
        1,
    );
    assert_issue(
        &text,
        "service",
        "tls:",
        0,
        &["missing required key \"service\""],
    );
}

#[test]
fn duplicate_backend_name() {
    let text = format!("{BASE}  - name: qudit\n    model: singlequdit\n");
    let all = issues(&text);
    assert_eq!(all.len(), 1, "{all:#?}");
    let second = text.rfind("name: qudit").unwrap() + "name: ".len();
    let line = text[..second].matches('\n').count() + 1;
    let column = second - text[..second].rfind('\n').unwrap();
    assert_eq!(all[0].path, "backends[1].name");
    assert_eq!((all[0].line, all[0].column), (Some(line), Some(column)));
    assert!(all[0].message.contains("duplicate backend name \"qudit\""));
}

#[test]
fn duplicate_device_name() {
    let text = replaced("name: detuning", "name: rf");
    let all = issues(&text);
    let dup = all
        .iter()
        .find(|i| i.path == "backends[0].devices[2].name")
        .unwrap_or_else(|| panic!("{all:#?}"));
    let (line, column) = pos_of(
        &text,
        "{ name: rf, driver: sim_dds, clock_period_ns: 1 }\n      - { name: rf",
    );
    assert_eq!((dup.line, dup.column), (Some(line + 1), Some(column + 8)));
    assert!(dup.message.contains("duplicate device name \"rf\""));
}

#[test]
fn sequence_device_that_does_not_exist() {
    let text = replaced(
        "    timing:\n",
        "    sequence:\n      measure: { device: ccd, exposure_ns: 100 }\n    timing:\n",
    );
    assert_issue(
        &text,
        "backends[0].sequence.measure.device",
        "ccd",
        0,
        &[
            "unknown device \"ccd\"",
            "mot, rf, detuning, interaction, camera",
        ],
    );
}

#[test]
fn sequence_device_with_unsuitable_driver() {
    let text = replaced(
        "    timing:\n",
        "    sequence:\n      rlx: { device: mot, rabi_frequency_hz: 5.0 }\n    timing:\n",
    );
    assert_issue(
        &text,
        "backends[0].sequence.rlx.device",
        "device: mot",
        8,
        &["sim_ttl", "needs one of: sim_dds"],
    );
}

#[test]
fn default_sequence_needs_the_default_devices() {
    // The sequence defaults to devices named mot, rf, ...: omitting "camera" is reported at
    // the default reference, without a line because the text never mentions it.
    let text = replaced(
        "      - { name: camera, driver: sim_camera, clock_period_ns: 1000 }\n",
        "",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].path, "backends[0].sequence.measure.device");
    assert!(all[0].message.contains("unknown device \"camera\""));
    // Best effort: the deepest key present in the file, the backend itself.
    let (line, column) = pos_of(&text, "name: qudit");
    assert_eq!((all[0].line, all[0].column), (Some(line), Some(column)));
}

#[test]
fn non_finite_rate() {
    let text = replaced(
        "    timing:\n",
        "    sequence:\n      rlz: { device: detuning, rate_hz: .inf }\n    timing:\n",
    );
    assert_issue(
        &text,
        "backends[0].sequence.rlz.rate_hz",
        ".inf",
        0,
        &["finite number > 0"],
    );
}

#[test]
fn files_mode_without_cert_and_key() {
    let text = replaced("mode: self_signed", "mode: files");
    let all = issues(&text);
    let (line, column) = pos_of(&text, "tls:");
    let paths: Vec<&str> = all.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["tls.cert", "tls.key"]);
    for issue in &all {
        assert_eq!((issue.line, issue.column), (Some(line), Some(column)));
        assert!(issue
            .message
            .contains("required when tls.mode is \"files\""));
    }
    // One line per issue in the display.
    let display = parse_str(&text, "x.yaml").unwrap_err().to_string();
    assert_eq!(display.lines().count(), 2);
    assert!(display.starts_with(&format!("x.yaml:{line}:{column}: tls.cert: ")));
}

#[test]
fn cert_given_in_self_signed_mode() {
    let text = replaced(
        "  mode: self_signed\n",
        "  mode: self_signed\n  cert: c.pem\n",
    );
    assert_issue(
        &text,
        "tls.cert",
        "c.pem",
        0,
        &["only allowed when tls.mode is \"files\""],
    );
}

#[test]
fn bad_listen_address() {
    let text = replaced("127.0.0.1:7878", "localhost:99999");
    assert_issue(
        &text,
        "service.listen",
        "localhost:99999",
        0,
        &["socket address", "localhost:99999"],
    );
}

#[test]
fn invalid_backend_name() {
    let text = replaced("name: qudit", "name: Big Qudit");
    assert_issue(
        &text,
        "backends[0].name",
        "Big Qudit",
        0,
        &["a-z, 0-9, _ and -"],
    );
}

#[test]
fn duplicate_yaml_key() {
    let text = replaced(
        "  mode: self_signed\n",
        "  mode: self_signed\n  mode: files\n",
    );
    assert_issue(
        &text,
        "tls.mode",
        "mode: files",
        0,
        &["duplicate key \"mode\""],
    );
}

#[test]
fn several_semantic_issues_are_all_reported_in_file_order() {
    let text = replaced("clock_period_ns: 10 }", "clock_period_ns: 0 }").replacen(
        "priority: 80",
        "priority: 100",
        1,
    );
    let paths: Vec<String> = issues(&text).into_iter().map(|i| i.path).collect();
    assert_eq!(
        paths,
        [
            "backends[0].timing.realtime.priority",
            "backends[0].devices[0].clock_period_ns"
        ]
    );
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let err = parse_str("service:\n  listen: [1, 2\nbackends: []\n", "s.yaml").unwrap_err();
    match &err {
        ConfigError::Syntax {
            origin,
            line,
            column,
            ..
        } => {
            assert_eq!(origin, "s.yaml");
            assert!(line.is_some() && column.is_some(), "{err:?}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.to_string().starts_with("s.yaml:"));
}

#[test]
fn empty_document_is_reported() {
    let all = issues("# nothing here\n");
    assert!(all[0].message.contains("empty"), "{all:?}");
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn load_resolves_relative_paths_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("etc");
    std::fs::create_dir(&sub).unwrap();
    let path = write_config(&sub, "sim.yaml", SIM_YAML);
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.config.data_dir(), sub.join("../data"));
    assert_eq!(
        loaded.config.db_path(),
        sub.join("../data").join("shotline.db")
    );
    assert_eq!(loaded.path, path);
    assert_eq!(loaded.text, SIM_YAML);

    let abs = SIM_YAML.replacen("data_dir: ../data", "data_dir: /srv/shotline", 1);
    assert_ne!(abs, SIM_YAML, "the data_dir line of sim.yaml changed");
    let loaded = load(&write_config(&sub, "abs.yaml", &abs)).unwrap();
    assert_eq!(loaded.config.data_dir(), Path::new("/srv/shotline"));
}

#[test]
fn load_resolves_tls_files_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let text = SIM_YAML.replacen(
        "  mode: self_signed\n",
        "  mode: files\n  cert: tls/cert.pem\n  key: /abs/key.pem\n",
        1,
    );
    let loaded = load(&write_config(dir.path(), "c.yaml", &text)).unwrap();
    assert_eq!(
        loaded.config.tls.cert,
        Some(dir.path().join("tls/cert.pem"))
    );
    assert_eq!(loaded.config.tls.key, Some(PathBuf::from("/abs/key.pem")));
}

#[test]
fn hash_is_stable_and_content_addressed() {
    let dir = tempfile::tempdir().unwrap();
    let a = load(&write_config(dir.path(), "a.yaml", SIM_YAML)).unwrap();
    let b = load(&write_config(dir.path(), "b.yaml", SIM_YAML)).unwrap();
    let again = load(&a.path).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash, again.hash);
    let hex = a.hash.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    // A comment-only change is a different file, hence a different provenance hash.
    let c = load(&write_config(
        dir.path(),
        "c.yaml",
        &format!("{SIM_YAML}# edited\n"),
    ))
    .unwrap();
    assert_ne!(a.hash, c.hash);
}

#[test]
fn load_reports_missing_file_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let err = load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { ref path, .. } if *path == missing));
    assert!(err.to_string().contains("nope.yaml"));

    let bad = write_config(
        dir.path(),
        "bad.yaml",
        &replaced("priority: 80", "priority: 0"),
    );
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:11:", bad.display())), "{err}");

    let not_utf8 = dir.path().join("bin.yaml");
    std::fs::write(&not_utf8, b"service: {}\n\xff\xfe").unwrap();
    assert!(matches!(
        load(&not_utf8),
        Err(ConfigError::Syntax { line: Some(2), .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_str(&text, "fuzz.yaml");
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[a-z_:{}\\[\\], \n\"'&*!|>#-]{0,200}") {
        let _ = parse_str(&text, "fuzz.yaml");
    }

    #[test]
    fn mutated_sim_yaml_never_panics(cut in 0usize..2000, insert in "[^\u{0}]{0,8}") {
        let mut text = SIM_YAML.to_owned();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        if let Err(err) = parse_str(&text, "fuzz.yaml") {
            prop_assert!(!err.to_string().is_empty());
        }
    }
}

#[test]
fn every_key_is_documented_and_shown_in_the_lab_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let example = std::fs::read_to_string(root.join("configs/lab-example.yaml")).unwrap();
    let config = parse_str(&example, "lab-example.yaml").unwrap();
    let yaml = serde_saphyr::to_string(&config).unwrap();
    let mut keys = 0;
    for line in yaml.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        let Some((key, _)) = line.split_once(':') else {
            continue;
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            continue;
        }
        keys += 1;
        assert!(
            ["`{key}`", ".{key}`", "`{key}."]
                .iter()
                .any(|pattern| docs.contains(&pattern.replace("{key}", key))),
            "{key} not documented"
        );
        assert!(
            example.contains(&format!("{key}:")),
            "{key} not in lab-example.yaml"
        );
    }
    assert!(keys > 50, "only {keys} keys found in\n{yaml}");
}

#[test]
fn multiple_documents_are_rejected() {
    let text = format!("{BASE}---\n{BASE}");
    assert!(parse_str(&text, "two.yaml").is_err());
}

// --- firmware bridge devices ---------------------------------------------------------------------------

const RF_SIM: &str = "      - { name: rf, driver: sim_dds, clock_period_ns: 1 }\n";

#[test]
fn a_bridge_device_can_play_the_rf_and_gets_the_defaults() {
    let text = replaced(
        RF_SIM,
        "      - name: rf\n        driver: bridge\n        clock_period_ns: 1\n        bridge: { address: 127.0.0.1:7700 }\n",
    );
    let config = parse_str(&text, "bridge.yaml").unwrap();
    let rf = &config.backends[0].devices[1];
    assert_eq!(rf.driver, shotline_config::DeviceDriver::Bridge);
    let b = rf.bridge.as_ref().unwrap();
    assert_eq!(b.transport, shotline_config::BridgeTransport::Tcp);
    assert_eq!(b.role, shotline_config::BridgeRole::Dds);
    assert_eq!((b.heartbeat_ms, b.window, b.max_retries), (20, 8, 10));
}

#[test]
fn bridge_mistakes_are_named_with_their_paths() {
    let missing = replaced(
        RF_SIM,
        "      - { name: rf, driver: bridge, clock_period_ns: 1 }\n",
    );
    let all = issues(&missing);
    assert_eq!(all[0].path, "backends[0].devices[1].bridge", "{all:?}");
    assert!(all[0].message.contains("required for driver bridge"));

    let stray = replaced(
        RF_SIM,
        "      - { name: rf, driver: sim_dds, clock_period_ns: 1, bridge: { address: a:1 } }\n",
    );
    let all = issues(&stray);
    assert_eq!(all[0].path, "backends[0].devices[1].bridge", "{all:?}");
    assert!(all[0].message.contains("only allowed with driver bridge"));

    let bad = replaced(
        RF_SIM,
        "      - { name: rf, driver: bridge, clock_period_ns: 1, bridge: { transport: serial, baud: 1234, window: 0, address: nope } }\n",
    );
    let all = issues(&bad);
    let paths: Vec<&str> = all.iter().map(|i| i.path.as_str()).collect();
    assert!(
        paths.contains(&"backends[0].devices[1].bridge.path"),
        "{all:?}"
    );
    assert!(
        paths.contains(&"backends[0].devices[1].bridge.window"),
        "{all:?}"
    );
    let baud = all
        .iter()
        .find(|i| i.path == "backends[0].devices[1].bridge.baud")
        .unwrap();
    assert!(
        baud.message.contains("1234") && baud.message.contains("115200"),
        "{baud:?}"
    );

    let tcp = replaced(
        RF_SIM,
        "      - { name: rf, driver: bridge, clock_period_ns: 1, bridge: { address: \"card-without-port\" } }\n",
    );
    let all = issues(&tcp);
    assert_eq!(
        all[0].path, "backends[0].devices[1].bridge.address",
        "{all:?}"
    );
    assert!(all[0].message.contains("host:port"));
}

#[test]
fn a_ttl_bridge_cannot_play_a_rotation() {
    let text = replaced(
        RF_SIM,
        "      - { name: rf, driver: bridge, clock_period_ns: 1, bridge: { address: \"127.0.0.1:7700\", role: ttl } }\n",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].path, "backends[0].sequence.rlx.device");
    assert!(
        all[0].message.contains("bridge with role ttl")
            && all[0].message.contains("bridge with role dds"),
        "{all:?}"
    );
}

#[test]
fn job_and_answer_limits_have_bounds_and_must_hold_one_job_summary() {
    let base = "service: {}\nbackends: [{name: a, model: singlequdit}]\n";
    let c = parse_str(base, "min.yaml").unwrap();
    assert_eq!(
        (
            c.limits.max_tags,
            c.limits.max_tag_bytes,
            c.limits.max_response_bytes
        ),
        (32, 256, 8_388_608)
    );
    for (limits, path) in [
        ("{max_tags: 257}", "limits.max_tags"),
        ("{max_tag_bytes: 0}", "limits.max_tag_bytes"),
        ("{max_qobj_id_bytes: 5000}", "limits.max_qobj_id_bytes"),
        (
            "{max_experiment_name_bytes: 0}",
            "limits.max_experiment_name_bytes",
        ),
        ("{max_shots_per_job: 0}", "limits.max_shots_per_job"),
        ("{max_job_duration_s: 0}", "limits.max_job_duration_s"),
        ("{max_response_bytes: 9000000}", "limits.max_response_bytes"),
        (
            "{max_tags: 256, max_tag_bytes: 1024, max_response_bytes: 65536}",
            "limits.max_response_bytes",
        ),
    ] {
        let all = issues(&format!("limits: {limits}\n{base}"));
        assert_eq!(all.len(), 1, "{all:#?}");
        assert_eq!(all[0].path, path, "{all:#?}");
    }
}

#[test]
fn load_caps_the_file_size_and_names_the_limit() {
    // /dev/zero never ends: without a cap this reads until memory runs out.
    let started = std::time::Instant::now();
    let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("limit of 1048576 bytes"),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A big regular file too, and one exactly at the limit is read (and fails later, as YAML).
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    let e = load(&big).unwrap_err().to_string();
    assert!(e.contains("limit of 1048576 bytes"), "{e}");
    std::fs::write(&big, vec![b'#'; 1024 * 1024]).unwrap();
    let e = load(&big).unwrap_err().to_string();
    assert!(!e.contains("limit of"), "{e}");
}
