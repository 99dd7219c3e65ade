//! Reading the `[tasks.<name>]` tables of the settings file: the flow
//! limits of a task function (its tasks on every queue), which supervisors
//! seed into Redis where none are set (docs/flow-control.md).
//!
//! ```toml
//! [tasks.call_partner_api]
//! concurrency_limit = 3        # at most 3 running at once, fleet-wide
//! rate_limit = "50/1s"         # at most 50 starts in any second
//! ```

use super::error::{Origin, SettingsError};
use super::queues::{bad, concurrency, rate};
use super::values::{Raw, hint, name};
use crate::Rate;

/// Settings of one task function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSettings {
    /// `concurrency_limit`: seeded into Redis as the function's
    /// fleet-wide concurrency limit when it has none there.
    pub concurrency_limit: Option<u32>,
    /// `rate_limit`: seeded into Redis as the function's rate limit when
    /// it has none there.
    pub rate_limit: Option<Rate>,
}

/// The keys a task table may have.
const TASK_KEYS: [&str; 2] = ["concurrency_limit", "rate_limit"];

/// Reads the value of the top-level `tasks` key.
pub(super) fn read_tasks(
    value: &toml::Value,
    origin: &Origin,
) -> Result<Vec<(String, TaskSettings)>, SettingsError> {
    let toml::Value::Table(table) = value else {
        return Err(bad(
            origin,
            "tasks",
            Raw::Toml(value).expected("a table of task functions ([tasks.NAME])"),
        ));
    };
    table
        .iter()
        .map(|(task, value)| {
            let prefix = format!("tasks.{task}");
            name(Raw::Env(task)).map_err(|p| bad(origin, &prefix, p))?;
            let toml::Value::Table(table) = value else {
                return Err(bad(
                    origin,
                    &prefix,
                    Raw::Toml(value).expected("a table of task settings"),
                ));
            };
            let mut settings = TaskSettings::default();
            for (key, value) in table {
                let full = format!("{prefix}.{key}");
                let err = |problem: String| bad(origin, &full, problem);
                match key.as_str() {
                    "concurrency_limit" => {
                        settings.concurrency_limit = Some(concurrency(value).map_err(err)?);
                    }
                    "rate_limit" => settings.rate_limit = Some(rate(value).map_err(err)?),
                    _ => {
                        return Err(SettingsError::UnknownKey {
                            also: Vec::new(),
                            origin: origin.clone(),
                            key: full,
                            hint: hint(key, TASK_KEYS),
                        });
                    }
                }
            }
            Ok((task.clone(), settings))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::Settings;

    #[test]
    fn task_tables_give_limits_and_refuse_anything_else() {
        let text = "[tasks.call_api]\nconcurrency_limit = 3\nrate_limit = \"50/1s\"\n";
        let s = Settings::from_toml_str(text, None).expect("valid");
        let t = &s.tasks["call_api"];
        assert_eq!(t.concurrency_limit, Some(3));
        assert_eq!(
            t.rate_limit.map(|r| r.to_string()).as_deref(),
            Some("50/1s")
        );
        for (bad, says) in [
            ("concurrency_limit = 0", "tasks.call_api.concurrency_limit"),
            ("rate_limit = \"50\"", "N/PERIOD"),
            ("memory_limit = \"1G\"", "tasks.call_api.memory_limit"),
        ] {
            let err = Settings::from_toml_str(&format!("[tasks.call_api]\n{bad}\n"), None)
                .expect_err(bad)
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(Settings::from_toml_str("tasks = 1\n", None).is_err());
    }
}
