//! Environment overrides: `REDIS_URL`, `SENTRY_DSN`, and `RT_<SETTING>` for every scalar
//! setting (`RT_REDIS_PREFIX`, `RT_DEFAULT_TASK_TIMEOUT`, ...), plus
//! `RT_MIDDLEWARE` and `RT_WORKER_QUEUES` as comma-separated lists.
//!
//! An empty variable counts as unset. `RT_REDIS_URL` wins over `REDIS_URL`
//! when both are set. An `RT_` variable that names nothing is refused
//! ([`check_names`]), so a typo is never ignored silently.

use super::Draft;
use super::error::{Origin, SettingsError};
use super::values::{Raw, SCALAR_KEYS, apply_scalar, hint, set_list};

/// The variable naming the settings file when no path is given.
pub(super) const SETTINGS_PATH_VAR: &str = "RT_SETTINGS";

/// `RT_` variables the programs read that are not settings: the log format
/// (a command-line flag's variable) and the dashboard's token.
const PROGRAM_VARS: [&str; 2] = ["RT_LOG_FORMAT", "RT_DASHBOARD_TOKEN"];

/// Every `RT_` variable with a meaning.
fn known_vars() -> Vec<String> {
    let mut known: Vec<String> = SCALAR_KEYS
        .into_iter()
        .chain(["middleware", "worker_queues"])
        .map(var_for)
        .collect();
    known.push(SETTINGS_PATH_VAR.to_owned());
    known.extend(PROGRAM_VARS.map(str::to_owned));
    known
}

/// Refuses `RT_` variables among `names` that name no setting, all of them
/// in one error (sorted; the first with a suggestion). Other variables are
/// not ours and are passed over.
pub(super) fn check_names(names: impl IntoIterator<Item = String>) -> Result<(), SettingsError> {
    let known = known_vars();
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|name| name.starts_with("RT_") && !known.contains(name))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    unknown.dedup();
    let first = unknown.remove(0);
    Err(SettingsError::UnknownVariable {
        hint: hint(&first, known.iter().map(String::as_str)),
        first,
        also: unknown,
    })
}

/// The variable for a setting: `RT_` and the key in capitals.
pub(super) fn var_for(key: &str) -> String {
    format!("RT_{}", key.to_ascii_uppercase())
}

/// Reads `name` from `env`, treating an empty value as unset.
pub(super) fn lookup(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|value| !value.trim().is_empty())
}

/// Applies every override found through `env` over `draft`.
pub(super) fn apply_env(
    draft: &mut Draft,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SettingsError> {
    // REDIS_URL and SENTRY_DSN first, so that RT_REDIS_URL and
    // RT_SENTRY_DSN (applied in the loop) win.
    let vars = [
        ("REDIS_URL".to_owned(), "redis_url"),
        ("SENTRY_DSN".to_owned(), "sentry_dsn"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "otlp_endpoint"),
    ]
    .into_iter()
    .chain(SCALAR_KEYS.into_iter().map(|key| (var_for(key), key)));
    for (var, key) in vars {
        let Some(value) = lookup(env, &var) else {
            continue;
        };
        let origin = Origin::Env(var);
        if let Some(result) = apply_scalar(&mut draft.settings, key, Raw::Env(&value)) {
            result.map_err(|problem| SettingsError::BadValue {
                origin: origin.clone(),
                key: key.to_owned(),
                problem,
            })?;
            draft.set_by(key, &origin);
        }
    }

    for key in ["middleware", "worker_queues"] {
        let var = var_for(key);
        let Some(value) = lookup(env, &var) else {
            continue;
        };
        let names = comma_list(&value, key).map_err(|problem| SettingsError::BadValue {
            origin: Origin::Env(var),
            key: key.to_owned(),
            problem,
        })?;
        set_list(&mut draft.settings, key, names);
    }
    Ok(())
}

/// A comma-separated list of names (`RT_MIDDLEWARE`, `RT_WORKER_QUEUES`), each once.
fn comma_list(value: &str, key: &str) -> Result<Vec<String>, String> {
    let what = key.trim_start_matches("worker_").trim_end_matches('s');
    let mut names: Vec<String> = Vec::new();
    for one in value.split(',').map(str::trim) {
        if one.is_empty() || one.chars().any(char::is_whitespace) {
            return Err(format!(
                "expected comma-separated {what} names, got {value:?}"
            ));
        }
        if names.iter().any(|n| n == one) {
            return Err(format!("{what} {one:?} is listed twice"));
        }
        names.push(one.to_owned());
    }
    if key == "worker_queues" {
        // `name` or `name=weight` (docs/flow-control.md#priorities).
        crate::QueueOrder::parse(&names)?;
    }
    Ok(names)
}
