//! The schema marker: which format the data under a prefix is in.
//!
//! The Python original and this code both default to the prefix
//! `redis_tasks` and share some key names (`P:queue:<name>`, `P:task:<id>`,
//! `P:workers`) while disagreeing on what is inside them. Left unchecked, a
//! Rust supervisor would take the original's tasks and fail them as corrupt.
//! So the first write of this code under a prefix sets `P:schema` to
//! [`SCHEMA_MARKER`], in the same script as the write, and every writing
//! script refuses to run when the marker names something else, or when it
//! is missing and the prefix shows keys in the original's layout (see
//! `foreign()` in the script prelude and `docs/redis-schema.md`).
//! A missing marker with only keys in our own shapes (data of an older
//! version of this code, or of a producer using plain Redis commands) is
//! adopted: the marker is written.

use super::{Store, StoreError, scripts};
use crate::part::Part;

/// The value of `P:schema` for data in this code's format: a format name
/// and a version, separated by a space.
pub const SCHEMA_MARKER: &str = scripts::SCHEMA_MARKER;

impl Store {
    /// Checks that the prefix holds data of this code's format (or nothing
    /// yet) and marks it as ours, in one atomic step. Call it before the
    /// first write of a process (a supervisor at start-up, an admin
    /// command); the scripts that write tasks check it again themselves.
    ///
    /// Fails with [`StoreError::ForeignSchema`], nothing written, when the
    /// marker names another format, or is missing while keys in the Python
    /// original's layout exist under the prefix.
    pub fn claim_schema(&self) -> Result<(), StoreError> {
        self.each(|p| p.schema_script(true)).map(|_| ())
    }

    /// Like [`claim_schema`](Store::claim_schema), but writes nothing: for
    /// commands that only read.
    pub fn check_schema(&self) -> Result<(), StoreError> {
        self.each(|p| p.schema_script(false)).map(|_| ())
    }

    /// The marker stored under the prefix, if any.
    pub fn schema_marker(&self) -> Result<Option<String>, StoreError> {
        self.zero().schema_marker()
    }
}

impl Part {
    pub(crate) fn schema_marker(&self) -> Result<Option<String>, StoreError> {
        let key = self.keys().schema();
        self.read(&[(&key, "string")], |c, _| {
            redis::cmd("GET").arg(&key).query(c)
        })
    }

    fn schema_script(&self, write: bool) -> Result<(), StoreError> {
        let script = |c: &mut redis::Connection, keys: &crate::keys::Keys| {
            scripts::CLAIM_SCHEMA
                .arg(keys.prefix())
                .arg(if write { "1" } else { "0" })
                .invoke::<i64>(c)
        };
        // The check writes nothing: no WAIT in the durable mode, so that
        // read-only commands work while a master has no replica.
        if write {
            self.run(&[], script)?;
        } else {
            self.read(&[], script)?;
        }
        Ok(())
    }
}

/// The error of a script that found another format: `RTSCHEMA <key>
/// <marker>` or `RTFOREIGN <key>`, followed by Redis's note on the script.
pub(crate) fn foreign_error(prefix: &str, code: &str, detail: &str) -> StoreError {
    let head = detail.split(" script: ").next().unwrap_or(detail).trim();
    let evidence = if code == "RTSCHEMA" {
        let (key, marker) = head.split_once(' ').unwrap_or((head, ""));
        format!("{key} says {marker:?}, this code writes {SCHEMA_MARKER:?}")
    } else {
        format!("{head} is laid out as the Python redis-tasks writes it")
    };
    StoreError::ForeignSchema {
        prefix: prefix.to_owned(),
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_format_and_version() {
        assert_eq!(SCHEMA_MARKER, "redis-tasks-rs 1");
    }

    #[test]
    fn script_errors_become_a_message_naming_the_prefix_setting() {
        let e = foreign_error(
            "redis_tasks",
            "RTSCHEMA",
            "redis_tasks:schema other-thing 3 script: 0123, on @user_script:1.",
        );
        let text = e.to_string();
        assert!(text.contains("\"other-thing 3\""), "{text}");
        assert!(text.contains("RT_REDIS_PREFIX"), "{text}");
        assert!(text.contains("redis_prefix"), "{text}");
        let e = foreign_error("rt", "RTFOREIGN", "rt:finished_tasks script: 0123");
        assert!(
            e.to_string().contains("rt:finished_tasks is laid out"),
            "{e}"
        );
    }
}
