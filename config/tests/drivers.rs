//! `devices[].driver` and `devices[].settings` against a catalog of registered drivers.

use shotline_config::{
    parse_str, parse_str_with, ConfigError, ConfigIssue, DriverCatalog, DriverNameError,
    DriverSpec, OutputKind, SIM_YAML,
};

const RF_SIM: &str = "{ name: rf, driver: sim_dds,";

fn with_rf(replacement: &str) -> String {
    assert!(SIM_YAML.contains(RF_SIM));
    SIM_YAML.replacen(RF_SIM, replacement, 1)
}

fn scpi() -> DriverCatalog {
    DriverCatalog::builtin()
        .with(DriverSpec {
            name: "scpi_awg".into(),
            outputs: vec![OutputKind::Dds],
        })
        .unwrap()
}

fn issues(text: &str, catalog: &DriverCatalog) -> Vec<ConfigIssue> {
    match parse_str_with(text, "sim.yaml", catalog) {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        other => panic!("expected issues, got {other:?}"),
    }
}

#[test]
fn a_registered_driver_is_accepted_with_its_settings() {
    let text = with_rf(
        "{ name: rf, driver: scpi_awg, settings: { address: \"10.0.0.7:5025\", timeout_ms: 500 },",
    );
    let config = parse_str_with(&text, "sim.yaml", &scpi()).unwrap();
    let rf = &config.backends[0].devices[1];
    assert_eq!(rf.driver.as_str(), "scpi_awg");
    assert_eq!(rf.settings.len(), 2);
    // The built-in catalog does not know it, and says which drivers it knows.
    let all = issues(&text, &DriverCatalog::builtin());
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].path, "backends[0].devices[1].driver");
    assert_eq!(
        all[0].message,
        "unknown driver \"scpi_awg\", registered drivers: sim_ttl, sim_dds, sim_camera, bridge"
    );
    assert!(parse_str(&text, "sim.yaml").is_err());
}

#[test]
fn an_unknown_driver_lists_the_registered_ones_and_is_located() {
    let text = with_rf("{ name: rf, driver: laser_x,");
    let all = issues(&text, &scpi());
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0]
            .message
            .ends_with("registered drivers: sim_ttl, sim_dds, sim_camera, bridge, scpi_awg"),
        "{all:?}"
    );
    let line = text[..text.find("laser_x").unwrap()].matches('\n').count() + 1;
    assert_eq!(all[0].line, Some(line));
}

#[test]
fn a_sequence_step_lists_registered_drivers_that_can_play_it() {
    let text = SIM_YAML.replacen(
        "{ name: camera, driver: sim_camera,",
        "{ name: camera, driver: scpi_awg,",
        1,
    );
    let all = issues(&text, &scpi());
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].path, "backends[0].sequence.measure.device");
    assert!(all[0].message.contains("driver scpi_awg"), "{all:?}");
    assert!(
        all[0].message.ends_with("needs one of: sim_camera"),
        "{all:?}"
    );
    let text = with_rf("{ name: rf, driver: sim_camera,");
    let all = issues(&text, &scpi());
    assert!(
        all[0]
            .message
            .ends_with("needs one of: sim_dds, scpi_awg, bridge with role dds"),
        "{all:?}"
    );
}

#[test]
fn settings_must_be_scalars() {
    let text = with_rf("{ name: rf, driver: scpi_awg, settings: { address: { host: a } },");
    let all = issues(&text, &scpi());
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].path, "backends[0].devices[1].settings.address");
    assert!(
        all[0]
            .message
            .contains("expected a boolean, an integer, a number or a string"),
        "{all:?}"
    );
    // A setting that parses is handed over typed.
    let text =
        with_rf("{ name: rf, driver: scpi_awg, settings: { on: true, n: -3, x: 2.5, s: \"5\" },");
    let config = parse_str_with(&text, "sim.yaml", &scpi()).unwrap();
    let settings = &config.backends[0].devices[1].settings;
    use shotline_config::DriverSetting::{Bool, Float, Int, Text};
    assert_eq!(settings["on"], Bool(true));
    assert_eq!(settings["n"], Int(-3));
    assert_eq!(settings["x"], Float(2.5));
    assert_eq!(settings["s"], Text("5".into()));
}

#[test]
fn catalog_names_are_checked() {
    let spec = |name: &str| DriverSpec {
        name: name.into(),
        outputs: vec![],
    };
    assert_eq!(
        DriverCatalog::builtin().with(spec("bridge")).unwrap_err(),
        DriverNameError::Duplicate("bridge".into())
    );
    assert_eq!(
        DriverCatalog::builtin().with(spec("Laser X")).unwrap_err(),
        DriverNameError::Invalid("Laser X".into())
    );
}
