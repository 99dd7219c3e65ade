//! What can be wrong with settings, always said with where the bad value came
//! from (the file or the environment variable) and which key it was.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A settings file on disk.
    File(PathBuf),
    /// Settings text given directly (not read from a file).
    Text,
    /// An environment variable, by name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "settings file {}", path.display()),
            Origin::Text => f.write_str("settings"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Settings that cannot be used; the program should refuse to start.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The settings file could not be read.
    #[error("cannot read settings file {}: {error}", path.display())]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// Why reading failed.
        error: io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: invalid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// The file (or text) being read.
        origin: Origin,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What the TOML parser objected to.
        message: String,
    },
    /// A key that is not a setting (at any level).
    #[error("{origin}: unknown key {key:?}{hint}{}", also_unknown(.also))]
    UnknownKey {
        /// The file (or text) being read.
        origin: Origin,
        /// The full dotted key, like `schedule.nightly.cronn`: the first
        /// unknown key in the file.
        key: String,
        /// A suggestion such as `; did you mean "cron"?`, or empty.
        hint: String,
        /// The other unknown keys at the same level, in the order the file
        /// has them, so that one run of the program names every typo.
        also: Vec<String>,
    },
    /// `RT_` variables in the environment that name no setting (a typo such
    /// as `RT_WORKER_CONCURENCY` would otherwise be ignored silently).
    #[error(
        "unknown environment variable {first}{hint}{}; every RT_ variable must name a \
         setting (docs/settings.md): fix or unset it",
        also_unknown(.also)
    )]
    UnknownVariable {
        /// The first unknown variable, by name.
        first: String,
        /// A suggestion such as `; did you mean "RT_WORKER_CONCURRENCY"?`, or empty.
        hint: String,
        /// The other unknown `RT_` variables, sorted.
        also: Vec<String>,
    },
    /// A value of the wrong type or out of range, or a required key that is
    /// missing.
    #[error("{}: {problem}", located(.origin, .key))]
    BadValue {
        /// Where the value came from.
        origin: Origin,
        /// The full dotted key, like `worker_heartbeat_freq`.
        key: String,
        /// What is wrong, and what was expected.
        problem: String,
    },
}

/// `; also unknown: "b", "c"` for the keys after the first, or nothing.
fn also_unknown(also: &[String]) -> String {
    if also.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = also.iter().map(|k| format!("{k:?}")).collect();
    format!("; also unknown: {}", listed.join(", "))
}

impl SettingsError {
    /// Where the offending value came from, when the error is about a value.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            SettingsError::Read { .. } | SettingsError::UnknownVariable { .. } => None,
            SettingsError::Syntax { origin, .. }
            | SettingsError::UnknownKey { origin, .. }
            | SettingsError::BadValue { origin, .. } => Some(origin),
        }
    }
}

/// `settings file /etc/x.toml: key "k"`, or just `environment variable
/// RT_K` (the variable already names the setting).
fn located(origin: &Origin, key: &str) -> String {
    match origin {
        Origin::Env(_) => origin.to_string(),
        _ => format!("{origin}: key {key:?}"),
    }
}
