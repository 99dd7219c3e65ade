//! The `max_result_bytes` limit on what a task's return value may weigh.
//!
//! The worker process hands the value over as JSON text; the supervisor
//! checks it against the setting before `process_outcome` runs, so that a
//! task whose result is too large fails (and middleware sees that failure)
//! rather than being stored in part or not at all without a word.

use redis_tasks_protocol::{FailureKind, Outcome};

/// `ended` and `result` as they are to be recorded: a success with a
/// result over `limit` bytes becomes a failure naming the setting, and its
/// result is dropped; so does a result that is not JSON (a worker process
/// that forged its frames: stored, it would make the record unreadable);
/// a failure never keeps a result.
pub fn checked(ended: Outcome, result: Option<String>, limit: u64) -> (Outcome, Option<String>) {
    match (ended, result) {
        (Outcome::Success, Some(text)) if u64::try_from(text.len()).unwrap_or(u64::MAX) > limit => {
            let failure = Outcome::failure(FailureKind::Error(format!(
                "result of {} bytes is over max_result_bytes ({limit}); not stored",
                text.len()
            )));
            (failure, None)
        }
        (Outcome::Success, Some(text))
            if serde_json::from_str::<serde_json::Value>(&text).is_err() =>
        {
            let failure = Outcome::failure(FailureKind::ProtocolViolation(
                "the task's result is not valid JSON".to_owned(),
            ));
            (failure, None)
        }
        (Outcome::Success, result) => (Outcome::Success, result),
        (failure, _) => (failure, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_over_the_limit_fails_the_task_naming_the_setting() {
        let (outcome, result) = checked(Outcome::Success, Some("[1,2,3]".into()), 3);
        assert_eq!(result, None);
        let text = outcome.error_text().unwrap_or_default();
        assert_eq!(
            text,
            "result of 7 bytes is over max_result_bytes (3); not stored"
        );
    }

    #[test]
    fn a_result_within_the_limit_is_kept_and_failures_keep_none() {
        let (outcome, result) = checked(Outcome::Success, Some("42".into()), 2);
        assert_eq!((outcome, result.as_deref()), (Outcome::Success, Some("42")));
        let failed = Outcome::failure(FailureKind::Error("no".into()));
        assert_eq!(
            checked(failed.clone(), Some("1".into()), 10),
            (failed, None)
        );
    }

    #[test]
    fn a_forged_result_that_is_not_json_is_a_protocol_violation() {
        let (outcome, result) = checked(Outcome::Success, Some("{not json".into()), 100);
        assert_eq!(result, None);
        assert_eq!(
            outcome.error_text().as_deref(),
            Some("protocol violation: the task's result is not valid JSON")
        );
    }
}
