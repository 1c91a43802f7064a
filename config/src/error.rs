//! Errors of loading and validating a configuration.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Field path, e.g. `backends[0].devices[2].clock_period_ns`.
    pub path: String,
    /// What is wrong, with the offending value and the limit or the allowed values.
    pub message: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// 1-based column in the file, when known.
    pub column: Option<usize>,
}

impl ConfigIssue {
    /// An issue at `path` without a known location.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, self.line, self.column)?;
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn write_location(
    f: &mut fmt::Formatter<'_>,
    line: Option<usize>,
    column: Option<usize>,
) -> fmt::Result {
    match (line, column) {
        (Some(l), Some(c)) => write!(f, "{l}:{c}: "),
        (Some(l), None) => write!(f, "{l}: "),
        _ => Ok(()),
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not well-formed YAML (or exceeds the parser's safety budget).
    #[error("{origin}:{}{message}", SyntaxLoc(*line, *column))]
    Syntax {
        /// The file name (or another origin) given to the parser.
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What the parser found wrong.
        message: String,
    },
    /// The YAML is well-formed but does not describe a valid configuration.
    #[error("{}", InvalidDisplay { origin, issues })]
    Invalid {
        /// The file name (or another origin) given to the parser.
        origin: String,
        /// Every problem found, in file order where known.
        issues: Vec<ConfigIssue>,
    },
}

struct SyntaxLoc(Option<usize>, Option<usize>);

impl fmt::Display for SyntaxLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: "),
            (Some(l), None) => write!(f, "{l}: "),
            _ => write!(f, " "),
        }
    }
}

struct InvalidDisplay<'a> {
    origin: &'a str,
    issues: &'a [ConfigIssue],
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.issues.is_empty() {
            return write!(f, "{}: invalid configuration", self.origin);
        }
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let sep = if issue.line.is_some() { ":" } else { ": " };
            write!(f, "{}{sep}{issue}", self.origin)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The issues of an [`ConfigError::Invalid`] error (empty for other kinds).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Invalid { issues, .. } => issues,
            _ => &[],
        }
    }
}
