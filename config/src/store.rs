//! `store`: which engine holds the service's data. Absent (the default): the embedded SQLite database in
//! the data directory (`persistence.file`). `store: { postgres: "postgresql://USER@HOST:PORT/DB" }`: a
//! PostgreSQL database, which several server processes may share.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest accepted `store.postgres` URL, in bytes.
pub const MAX_POSTGRES_URL_BYTES: usize = 1024;

/// `store`: the engine and its options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// A PostgreSQL URL `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`; absent: SQLite in the data dir.
    pub postgres: Option<PostgresUrl>,
    /// Run even if the server's `synchronous_commit` is `off` or `local` (or `fsync` is off): commits
    /// acknowledged just before a server crash may then be lost. Only with `postgres`.
    pub allow_synchronous_commit_off: bool,
}

/// A PostgreSQL connection URL. It may hold a password: `Debug` and [`PostgresUrl::redacted`] never show
/// it; [`PostgresUrl::expose`] gives the URL to connect with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The URL, password included (to connect; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl From<&str> for PostgresUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({:?})", self.redacted())
    }
}

/// `url` with the password of `user:PASSWORD@` and of a `password=` query parameter replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

/// What is wrong with a `store.postgres` URL, if anything (the message shows the URL redacted).
pub(crate) fn postgres_url_problem(url: &PostgresUrl) -> Option<String> {
    let raw = url.expose();
    const SHAPE: &str = "expected postgresql://USER@HOST:PORT/DB";
    if raw.len() > MAX_POSTGRES_URL_BYTES {
        return Some(format!(
            "URL of {} bytes is too long, at most {MAX_POSTGRES_URL_BYTES} bytes are allowed",
            raw.len()
        ));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some(format!(
            "URL {:?} contains spaces or control characters; {SHAPE} (percent-encode special characters)",
            url.redacted()
        ));
    }
    let Some(rest) = raw
        .strip_prefix("postgresql://")
        .or_else(|| raw.strip_prefix("postgres://"))
    else {
        return Some(format!(
            "URL {:?} does not start with postgresql:// or postgres://; {SHAPE}",
            url.redacted()
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let database = path.split('?').next().unwrap_or("");
    if host_port.is_empty() || host_port.starts_with(':') {
        return Some(format!("URL {:?} names no host; {SHAPE}", url.redacted()));
    }
    if let Some((_, port)) = host_port
        .rsplit_once(':')
        .filter(|_| !host_port.ends_with(']'))
    {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Some(format!(
                "URL {:?} has port {port:?}, expected a number in 1..=65535; {SHAPE}",
                url.redacted()
            ));
        }
    }
    if database.is_empty() {
        return Some(format!(
            "URL {:?} names no database; {SHAPE}",
            url.redacted()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(url: &str) -> Option<String> {
        postgres_url_problem(&PostgresUrl::from(url))
    }

    #[test]
    fn well_formed_urls_pass() {
        for ok in [
            "postgresql://shotline@db.lab:5432/shotline",
            "postgres://shotline:s3cret@127.0.0.1/shotline?sslmode=disable",
            "postgresql://u@[::1]:5433/db",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn malformed_urls_are_named_without_their_password() {
        for (bad, says) in [
            ("mysql://u:s3cret@db/x", "does not start"),
            ("postgresql://u:s3cret@/x", "no host"),
            ("postgresql://u:s3cret@db:99999/x", "port"),
            ("postgresql://u:s3cret@db:5432", "no database"),
            ("postgresql://u:s3cret@db:5432/", "no database"),
            ("postgresql://u:s3 cret@db/x", "spaces"),
        ] {
            let p = problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(p.contains(says), "{bad}: {p}");
            assert!(!p.contains("s3cret") && !p.contains("s3 cret"), "{p}");
        }
        let long = format!("postgresql://db/{}", "x".repeat(MAX_POSTGRES_URL_BYTES));
        assert!(problem(&long).unwrap().contains("1024"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let url = PostgresUrl::from("postgresql://lab:hunter2@db/x?password=hunter2");
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(url.redacted(), "postgresql://lab:***@db/x?password=***");
        assert_eq!(
            url.expose(),
            "postgresql://lab:hunter2@db/x?password=hunter2"
        );
    }
}
