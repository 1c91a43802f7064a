//! The `store` section: SQLite by default, a PostgreSQL URL validated with its location and never echoed
//! with its password.

use shotline_config::{parse_str, ConfigError, SIM_YAML};

fn with_store(store: &str) -> String {
    format!("{SIM_YAML}\n{store}\n")
}

#[test]
fn without_a_store_section_the_data_lives_in_sqlite() {
    let config = parse_str(SIM_YAML, "sim.yaml").unwrap();
    assert_eq!(config.store.postgres, None);
    assert!(!config.store.allow_synchronous_commit_off);
}

#[test]
fn a_postgres_url_selects_postgresql() {
    let text = with_store(
        "store: { postgres: \"postgresql://lab:s3cret@db.lab:5432/shotline\", allow_synchronous_commit_off: true }",
    );
    let config = parse_str(&text, "lab.yaml").unwrap();
    let url = config.store.postgres.as_ref().unwrap();
    assert_eq!(url.expose(), "postgresql://lab:s3cret@db.lab:5432/shotline");
    assert!(config.store.allow_synchronous_commit_off);
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "Debug of the config shows the password"
    );
}

#[test]
fn a_malformed_url_is_located_and_its_password_hidden() {
    let text = with_store("store:\n  postgres: \"mysql://lab:s3cret@db/x\"");
    let err = parse_str(&text, "lab.yaml").unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("store.postgres"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let ConfigError::Invalid { issues, .. } = err else {
        panic!("expected a validation error: {shown}")
    };
    let line = SIM_YAML.lines().count() + 3;
    assert_eq!(issues[0].line, Some(line), "{shown}");
}

#[test]
fn allowing_unsafe_commits_needs_postgres_and_unknown_keys_are_refused() {
    let err = parse_str(
        &with_store("store: { allow_synchronous_commit_off: true }"),
        "x.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("store.allow_synchronous_commit_off"), "{err}");
    let err = parse_str(&with_store("store: { sqlite: x.db }"), "x.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sqlite"), "{err}");
}
