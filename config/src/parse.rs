//! Parsing YAML text into a [`Config`] and turning parser errors into located issues.

use serde_saphyr::{DefaultMessageFormatter, Error as YamlError, MessageFormatter};

use crate::drivers::DriverCatalog;
use crate::error::{ConfigError, ConfigIssue};
use crate::locate::{LocationIndex, Pos, Prefer};
use crate::schema::Config;

/// Parses and validates a configuration. `origin` names the text in messages (a file name). Devices may name
/// the built-in drivers only, backends the built-in models ([`crate::BUILTIN_MODELS`]).
pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_str_with_plugins(
        text,
        origin,
        &DriverCatalog::builtin(),
        crate::BUILTIN_MODELS,
    )
}

/// [`parse_str`] accepting the drivers of `drivers` (the built-in ones and those an embedder registered).
pub fn parse_str_with(
    text: &str,
    origin: &str,
    drivers: &DriverCatalog,
) -> Result<Config, ConfigError> {
    parse_str_with_plugins(text, origin, drivers, crate::BUILTIN_MODELS)
}

/// [`parse_str`] for a runtime that knows the models `models` (the built-in ones and any an embedding
/// program registers: `shotline_models::ModelRegistry::names`).
pub fn parse_str_with_models(
    text: &str,
    origin: &str,
    models: &[&str],
) -> Result<Config, ConfigError> {
    parse_str_with_plugins(text, origin, &DriverCatalog::builtin(), models)
}

/// [`parse_str`] for a runtime that knows the drivers of `drivers` and the models `models`.
pub fn parse_str_with_plugins(
    text: &str,
    origin: &str,
    drivers: &DriverCatalog,
    models: &[&str],
) -> Result<Config, ConfigError> {
    // The schema-free pass tells well-formed YAML from syntax errors and indexes positions.
    let index = match LocationIndex::build(text) {
        Ok(index) => index,
        Err(err) => {
            let (line, column) = split(error_pos(&err));
            return Err(ConfigError::Syntax {
                origin: origin.to_owned(),
                line,
                column,
                message: message_of(&err),
            });
        }
    };
    let config: Config = match serde_saphyr::from_str(text) {
        Ok(config) => config,
        Err(err) => {
            return Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                issues: vec![schema_issue(&err, text, &index)],
            })
        }
    };
    if let Err(mut issues) = config.validate_with_plugins(drivers, models) {
        for issue in &mut issues {
            if issue.line.is_none() {
                let (line, column) = split(index.position_of(&issue.path));
                issue.line = line;
                issue.column = column;
            }
        }
        issues.sort_by_key(|i| (i.line.is_none(), i.line, i.column));
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            issues,
        });
    }
    Ok(config)
}

fn split(pos: Option<Pos>) -> (Option<usize>, Option<usize>) {
    match pos {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    }
}

/// The error without its snippet and alias wrappers.
fn original(mut err: &YamlError) -> &YamlError {
    loop {
        match err {
            YamlError::WithSnippet { error, .. } | YamlError::AliasError { error, .. } => {
                err = error;
            }
            other => return other,
        }
    }
}

fn error_pos(err: &YamlError) -> Option<Pos> {
    let loc = err.location()?;
    let line = usize::try_from(loc.line()).ok()?;
    let column = usize::try_from(loc.column()).ok()?;
    (line > 0 && column > 0).then_some((line, column))
}

/// The parser's message, without location suffix.
fn message_of(err: &YamlError) -> String {
    DefaultMessageFormatter
        .format_message(original(err))
        .into_owned()
}

fn one_of(values: &[&str]) -> String {
    if values.is_empty() {
        "none".to_owned()
    } else {
        values.join(", ")
    }
}

/// The source text of the node at the error's location, if short and on one line.
fn found_text(err: &YamlError, text: &str) -> Option<String> {
    let span = err.location()?.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let found = text.get(start..start.checked_add(len)?)?.trim();
    (!found.is_empty() && found.chars().count() <= 60 && !found.contains('\n'))
        .then(|| found.to_owned())
}

fn describe_type(ty: &str) -> String {
    match ty {
        "u8" => "an integer in 0..=255".to_owned(),
        "u16" => "an integer in 0..=65535".to_owned(),
        "u32" => "an integer in 0..=4294967295".to_owned(),
        "u64" | "usize" => "an integer in 0..=18446744073709551615".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "bool" => "true or false".to_owned(),
        other => other.to_owned(),
    }
}

/// What the whole document must look like.
const ROOT_SHAPE: &str = "expected a mapping with at least the keys service and backends";

/// A schema error (unknown key, wrong type, bad enum value, missing field, ...) as an issue.
fn schema_issue(err: &YamlError, text: &str, index: &LocationIndex) -> ConfigIssue {
    let at = error_pos(err);
    let (mut line, mut column) = split(at);
    let path_at = |prefer| {
        at.and_then(|p| index.path_at(p, prefer))
            .unwrap_or_default()
            .to_owned()
    };
    let found = found_text(err, text);
    let with_found = |msg: String| match &found {
        Some(f) => format!("{msg}, found \"{f}\""),
        None => msg,
    };
    let (path, message) = match original(err) {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => (
            path_at(Prefer::Key),
            format!(
                "unknown key \"{field}\", allowed keys: {}",
                one_of(expected)
            ),
        ),
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            path_at(Prefer::Value),
            format!(
                "unknown value \"{variant}\", expected one of: {}",
                one_of(expected)
            ),
        ),
        YamlError::SerdeMissingField { field, .. } => {
            let (parent, pos) = match at.and_then(|p| index.container_at(p)) {
                Some((parent, pos)) => (parent.to_owned(), pos),
                None => (String::new(), at),
            };
            (line, column) = split(pos.or(at));
            let path = if parent.is_empty() {
                (*field).to_owned()
            } else {
                format!("{parent}.{field}")
            };
            (path, format!("missing required key \"{field}\""))
        }
        YamlError::DuplicateMappingKey { key, .. } => (
            path_at(Prefer::Key),
            match key {
                Some(k) => format!("duplicate key \"{k}\""),
                None => "duplicate key".to_owned(),
            },
        ),
        YamlError::InvalidScalar { ty, .. } => (
            path_at(Prefer::Value),
            with_found(format!("wrong type: expected {}", describe_type(ty))),
        ),
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            path_at(Prefer::Value),
            format!("wrong type: expected {expected}, found {unexpected}"),
        ),
        YamlError::Eof { .. } => (
            String::new(),
            format!("the document is empty: {ROOT_SHAPE}"),
        ),
        other => {
            let path = path_at(Prefer::Value);
            let message = match other {
                YamlError::Unexpected { .. } if path.is_empty() => ROOT_SHAPE.to_owned(),
                YamlError::Unexpected { expected, .. } => match index.kind_of(&path) {
                    Some(kind) if kind != "scalar" => {
                        format!("wrong type: expected {expected}, found a {kind}")
                    }
                    _ => with_found(format!("wrong type: expected {expected}")),
                },
                _ => with_found(message_of(other)),
            };
            (path, message)
        }
    };
    ConfigIssue {
        path,
        message,
        line,
        column,
    }
}
