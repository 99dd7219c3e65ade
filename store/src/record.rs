//! Reading task records out of Redis hashes, and writing times the way the
//! schema stores them.
//!
//! A record written by another program may be half-written or wrong; every
//! field is checked here and a problem becomes [`StoreError::Corrupt`]
//! naming the field, never a panic.

use std::collections::HashMap;

use jiff::Timestamp;
use redis::Value;

use super::StoreError;
use redis_tasks_protocol::model::{AbortedRun, TaskRecord, TaskStatus, describe_call};
use redis_tasks_protocol::retry::{Attempt, RetryPolicy};

/// The fields of a task hash this code reads or writes (see
/// `docs/redis-schema.md`); others are reported by [`unknown_fields`].
pub(crate) const KNOWN_FIELDS: &[&str] = &[
    "task",
    "args",
    "status",
    "queue",
    "enqueued_at",
    "description",
    "started_at",
    "ended_at",
    "error",
    "meta",
    "aborted_runs",
    "worker",
    "timeout",
    "retry",
    "attempts",
    "run_at",
    "result",
    "unique",
    "graph",
    "graph_node",
    "expires_at",
    "traceparent",
];

/// The fields of a task hash that are not part of the schema (a raw
/// producer's typo such as `timeuot`), sorted.
pub(crate) fn unknown_fields(hash: &RawHash) -> Vec<String> {
    let mut unknown: Vec<String> = hash
        .keys()
        .filter(|k| !KNOWN_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    unknown
}

/// The raw fields of one Redis hash, values still as bytes.
pub(crate) type RawHash = HashMap<String, Vec<u8>>;

/// A time as the schema stores it: RFC 3339 in UTC with at most microsecond
/// precision, e.g. `2026-11-25T08:17:26.123456Z`.
pub(crate) fn time_text(ts: Timestamp) -> String {
    micros(ts).to_string()
}

/// A time as a sorted-set score: unix seconds with a fraction.
pub(crate) fn score(ts: Timestamp) -> String {
    let us = ts.as_microsecond();
    format!(
        "{}.{:06}",
        us.div_euclid(1_000_000),
        us.rem_euclid(1_000_000)
    )
}

/// `ts` truncated to whole microseconds.
fn micros(ts: Timestamp) -> Timestamp {
    // In range by construction: the value came from a valid timestamp.
    Timestamp::from_microsecond(ts.as_microsecond()).unwrap_or(ts)
}

/// Turns an `HGETALL`-style reply (a flat array in RESP2, a map in RESP3)
/// into field/value pairs.
pub(crate) fn hash_from_value(what: &'static str, value: Value) -> Result<RawHash, StoreError> {
    let bad = |detail: String| StoreError::UnexpectedReply { what, detail };
    let pairs: Vec<(Value, Value)> = match value {
        Value::Nil => Vec::new(),
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(bad(format!("odd number of hash items ({})", items.len())));
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        other => return Err(bad(format!("expected a hash, got {other:?}"))),
    };
    let mut out = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        let k = bytes_of(k).map_err(&bad)?;
        let v = bytes_of(v).map_err(&bad)?;
        out.insert(String::from_utf8_lossy(&k).into_owned(), v);
    }
    Ok(out)
}

/// The bytes of a string-like reply.
pub(crate) fn bytes_of(value: Value) -> Result<Vec<u8>, String> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Okay => Ok(b"OK".to_vec()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

/// A string-like reply as text.
pub(crate) fn text_of(what: &'static str, value: Value) -> Result<String, StoreError> {
    let bytes = bytes_of(value).map_err(|detail| StoreError::UnexpectedReply { what, detail })?;
    String::from_utf8(bytes).map_err(|_| StoreError::UnexpectedReply {
        what,
        detail: "reply is not utf-8".to_owned(),
    })
}

/// Reads the fields of one worker-slot hash as text (lossy on bad UTF-8:
/// these are informational).
pub(crate) fn text_field(hash: &RawHash, field: &str) -> Option<String> {
    hash.get(field)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|s| !s.is_empty())
}

/// Checks and converts the fields of `P:task:<id>` into a [`TaskRecord`].
///
/// An empty hash means the key does not exist: [`StoreError::NotFound`].
pub(crate) fn parse_record(id: &str, hash: &RawHash) -> Result<TaskRecord, StoreError> {
    if hash.is_empty() {
        return Err(StoreError::NotFound { id: id.to_owned() });
    }
    let r = Reader { id, hash };
    let task = r.required("task")?;
    let args_text = r.required("args")?;
    let args: serde_json::Value =
        serde_json::from_str(&args_text).map_err(|e| r.corrupt("args", e.to_string()))?;
    let status: TaskStatus = r.required("status")?.parse().map_err(
        |e: redis_tasks_protocol::model::UnknownStatus| r.corrupt("status", e.to_string()),
    )?;
    let queue = r.required("queue")?;
    let enqueued_at = r
        .time("enqueued_at")?
        .ok_or_else(|| r.corrupt("enqueued_at", "missing".to_owned()))?;
    let description = r
        .optional("description")?
        .unwrap_or_else(|| describe_call(&task, &args));
    let meta = match r.optional("meta")? {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(r.corrupt("meta", "not a json object".to_owned())),
            Err(e) => return Err(r.corrupt("meta", e.to_string())),
        },
    };
    let aborted_runs = match r.optional("aborted_runs")? {
        None => Vec::new(),
        Some(text) => serde_json::from_str::<Vec<AbortedRun>>(&text)
            .map_err(|e| r.corrupt("aborted_runs", e.to_string()))?,
    };
    let timeout = match r.optional("timeout")? {
        None => None,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Some(secs),
            _ => {
                return Err(r.corrupt(
                    "timeout",
                    format!("{text:?} is not a whole number of seconds above 0"),
                ));
            }
        },
    };
    let retry = r
        .optional("retry")?
        .map(|text| RetryPolicy::from_json(&text).map_err(|e| r.corrupt("retry", e.to_string())))
        .transpose()?;
    let attempts = match r.optional("attempts")? {
        None => Vec::new(),
        Some(text) => serde_json::from_str::<Vec<Attempt>>(&text)
            .map_err(|e| r.corrupt("attempts", e.to_string()))?,
    };
    let result = match r.optional("result")? {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| r.corrupt("result", e.to_string()))?,
        ),
    };
    Ok(TaskRecord {
        id: id.to_owned(),
        task,
        args,
        status,
        queue,
        description,
        error: r.optional("error")?,
        enqueued_at,
        started_at: r.time("started_at")?,
        ended_at: r.time("ended_at")?,
        meta,
        aborted_runs,
        timeout,
        retry,
        attempts,
        run_at: r.time("run_at")?,
        result,
        unique: r.optional("unique")?,
        expires_at: r.time("expires_at")?,
        traceparent: r.optional("traceparent")?,
    })
}

/// Field access with the record's id at hand for error messages.
struct Reader<'a> {
    id: &'a str,
    hash: &'a RawHash,
}

impl Reader<'_> {
    fn corrupt(&self, field: &str, reason: String) -> StoreError {
        StoreError::Corrupt {
            id: self.id.to_owned(),
            field: field.to_owned(),
            reason,
        }
    }

    /// The field as text; absent or empty is `None`.
    fn optional(&self, field: &str) -> Result<Option<String>, StoreError> {
        match self.hash.get(field) {
            None => Ok(None),
            Some(bytes) if bytes.is_empty() => Ok(None),
            Some(bytes) => String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| self.corrupt(field, "not utf-8 text".to_owned())),
        }
    }

    /// The field as non-empty text.
    fn required(&self, field: &str) -> Result<String, StoreError> {
        self.optional(field)?
            .ok_or_else(|| self.corrupt(field, "missing".to_owned()))
    }

    /// The field as an RFC 3339 time; absent or empty is `None`.
    fn time(&self, field: &str) -> Result<Option<Timestamp>, StoreError> {
        self.optional(field)?
            .map(|text| {
                text.parse::<Timestamp>()
                    .map_err(|e| self.corrupt(field, format!("not an RFC 3339 time: {e}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(fields: &[(&str, &str)]) -> RawHash {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("task", "send"),
            ("args", "[1,\"x\"]"),
            ("status", "queued"),
            ("queue", "default"),
            ("enqueued_at", "2026-11-25T08:17:26.123456Z"),
        ]
    }

    #[test]
    fn a_minimal_record_gets_defaults() {
        let rec = parse_record("id1", &hash(&minimal())).expect("valid record");
        assert_eq!(rec.description, r#"send(1, "x")"#);
        assert!(rec.meta.is_empty());
        assert!(rec.aborted_runs.is_empty());
        assert_eq!(rec.started_at, None);
        assert_eq!(rec.error, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        for (field, value) in [
            ("args", "{nope"),
            ("status", "done"),
            ("enqueued_at", "yesterday"),
            ("started_at", "12:00"),
            ("meta", "[1]"),
            ("aborted_runs", "{}"),
            ("timeout", "0"),
            ("timeout", "30s"),
            ("retry", "{\"factor\": -1}"),
            ("attempts", "{}"),
            ("run_at", "soon"),
            ("expires_at", "tomorrow"),
        ] {
            let mut fields = minimal();
            fields.retain(|(k, _)| *k != field);
            fields.push((field, value));
            match parse_record("id1", &hash(&fields)) {
                Err(StoreError::Corrupt { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected corrupt, got {other:?}"),
            }
        }
        let mut fields = minimal();
        fields.retain(|(k, _)| *k != "task");
        assert!(matches!(
            parse_record("id1", &hash(&fields)),
            Err(StoreError::Corrupt { field, .. }) if field == "task"
        ));
        assert!(matches!(
            parse_record("id1", &RawHash::new()),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn options_of_one_task_are_read_and_unknown_fields_named() {
        let mut fields = minimal();
        fields.push(("timeout", "30"));
        fields.push(("retry", "{\"max_retries\": 2}"));
        fields.push(("run_at", "2026-11-25T09:00:00Z"));
        fields.push(("timeuot", "5"));
        fields.push(("colour", "red"));
        let h = hash(&fields);
        let rec = parse_record("id1", &h).expect("valid record");
        assert_eq!(rec.timeout, Some(30));
        assert_eq!(rec.retry.map(|r| r.max_retries), Some(2));
        assert!(rec.run_at.is_some());
        assert_eq!(unknown_fields(&h), ["colour", "timeuot"]);
    }

    /// Values a raw producer might write into a field: numbers of any
    /// size, JSON of any shape, times, and noise.
    fn raw_values() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string().into_bytes()),
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            any::<f64>().prop_map(|n| n.to_string().into_bytes()),
            Just(b"10000000000000000000000".to_vec()),
            Just(b"2026-11-25T08:17:26Z".to_vec()),
            Just(b"-009999-01-01T00:00:00Z".to_vec()),
            Just(b"{\"max_retries\":4294967295,\"base\":1e308,\"cap\":-1}".to_vec()),
            Just(
                b"[{\"started_at\":null,\"ended_at\":\"2026-11-25T08:17:26Z\",\"reason\":\"x\"}]"
                    .to_vec()
            ),
            "[\\[\\]{}\":,0-9a-z ]{0,40}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Whatever a raw producer writes into any field of a task hash,
        /// reading it is a record or a named error, never a panic.
        #[test]
        fn any_hash_reads_as_a_record_or_an_error(
            fields in proptest::collection::vec(
                (proptest::sample::select(KNOWN_FIELDS.to_vec()), raw_values()),
                0..24,
            ),
            base in proptest::prelude::any::<bool>(),
        ) {
            let mut h = if base { hash(&minimal()) } else { RawHash::new() };
            for (field, value) in fields {
                h.insert(field.to_owned(), value);
            }
            match parse_record("id1", &h) {
                Ok(rec) => {
                    if let Some(retry) = rec.retry {
                        proptest::prop_assert!(retry.validate().is_ok());
                    }
                }
                Err(StoreError::Corrupt { .. } | StoreError::NotFound { .. }) => {}
                Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
            }
            let _ = unknown_fields(&h);
        }
    }

    #[test]
    fn times_are_stored_to_the_microsecond() {
        let ts: Timestamp = "2026-11-25T08:17:26.123456789Z".parse().expect("time");
        assert_eq!(time_text(ts), "2026-11-25T08:17:26.123456Z");
        assert_eq!(score(ts), "1795594646.123456");
    }
}
