//! Reading the top level of a settings file.
//!
//! Each top-level key is one arm here; the `[schedule.ID]` and
//! `[queues.NAME]` tables have readers of their own.

use super::Draft;
use super::entries::read_entries;
use super::error::{Origin, SettingsError};
use super::queues::read_queues;
use super::tasks::read_tasks;
use super::values::{OTHER_KEYS, Raw, SCALAR_KEYS, apply_scalar, hint, name, set_list};

/// Applies the settings in TOML `text` (read from `origin`) over `draft`.
pub(super) fn apply_file(
    draft: &mut Draft,
    text: &str,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let table: toml::Table = text.parse().map_err(|err| syntax(&err, text, origin))?;
    refuse_unknown_keys(&table, text, origin)?;
    for (key, value) in &table {
        if let Some(result) = apply_scalar(&mut draft.settings, key, Raw::Toml(value)) {
            result.map_err(|problem| SettingsError::BadValue {
                origin: origin.clone(),
                key: key.clone(),
                problem,
            })?;
            draft.set_by(key, origin);
            continue;
        }
        match key.as_str() {
            "middleware" | "worker_queues" => {
                let names = name_list(value, key).map_err(|problem| SettingsError::BadValue {
                    origin: origin.clone(),
                    key: key.clone(),
                    problem,
                })?;
                set_list(&mut draft.settings, key, names);
            }
            "schedule" => {
                draft.entries = read_entries(value, origin)?;
            }
            "queues" => {
                draft.settings.queues = read_queues(value, origin)?.into_iter().collect();
            }
            "tasks" => {
                draft.settings.tasks = read_tasks(value, origin)?.into_iter().collect();
            }
            // Refused above already; kept so that a key added to the lists
            // without an arm here is an error, never a panic.
            _ => {
                return Err(SettingsError::UnknownKey {
                    origin: origin.clone(),
                    key: key.clone(),
                    hint: String::new(),
                    also: Vec::new(),
                });
            }
        }
    }
    Ok(())
}

/// Every top-level key a settings file may have.
fn known_keys() -> impl Iterator<Item = &'static str> {
    SCALAR_KEYS
        .into_iter()
        .chain(OTHER_KEYS)
        .chain(["queues", "tasks"])
}

/// Refuses a file with unknown top-level keys, naming all of them in the
/// order the file has them (the first with a suggestion), so that one run
/// shows every typo.
fn refuse_unknown_keys(
    table: &toml::Table,
    text: &str,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let mut unknown: Vec<&String> = table
        .keys()
        .filter(|key| !known_keys().any(|known| known == key.as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    // The table is sorted by name; the file's own order comes from the
    // parser's spans (the text parsed once already, so this cannot fail).
    let positions: Vec<(String, usize)> = toml::de::DeTable::parse(text)
        .map(|doc| {
            doc.get_ref()
                .keys()
                .map(|key| (key.get_ref().to_string(), key.span().start))
                .collect()
        })
        .unwrap_or_default();
    let position = |key: &str| {
        positions
            .iter()
            .find(|(name, _)| name == key)
            .map_or(usize::MAX, |(_, at)| *at)
    };
    unknown.sort_by_key(|key| position(key));
    let first = unknown[0];
    Err(SettingsError::UnknownKey {
        origin: origin.clone(),
        key: first.clone(),
        hint: hint(first, known_keys()),
        also: unknown[1..].iter().map(|k| (*k).clone()).collect(),
    })
}

/// `middleware = ["name", ...]` (registered middleware to enable, in
/// order) or `worker_queues = ["name", ...]` (in priority order): each name once.
fn name_list(value: &toml::Value, key: &str) -> Result<Vec<String>, String> {
    let what = key.trim_start_matches("worker_").trim_end_matches('s');
    let toml::Value::Array(items) = value else {
        return Err(Raw::Toml(value).expected(&format!("an array of {what} names")));
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let one = name(Raw::Toml(item)).map_err(|p| format!("each {what} name: {p}"))?;
        if names.contains(&one) {
            return Err(format!("{what} {one:?} is listed twice"));
        }
        names.push(one);
    }
    if key == "worker_queues" {
        // `name` or `name=weight` (docs/flow-control.md#priorities).
        crate::QueueOrder::parse(&names)?;
    }
    Ok(names)
}

/// A one-line syntax error with the line and column of the problem.
fn syntax(err: &toml::de::Error, text: &str, origin: &Origin) -> SettingsError {
    let start = err.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    SettingsError::Syntax {
        origin: origin.clone(),
        line,
        column,
        message: err.message().trim().replace('\n', " "),
    }
}
