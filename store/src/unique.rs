//! Freeing uniqueness keys whose task vanished.
//!
//! A uniqueness key `P:unique:<key>` is freed by the script that ends its
//! task for good. A task can also vanish without ending (its queue emptied
//! by hand, its record deleted or expired by other means); its key then
//! names a task that is not live, which an enqueue already treats as free.
//! Maintenance deletes such keys so they do not pile up.

use super::{Store, StoreError, scripts};
use crate::part::Part;

/// How many keys one `SCAN` step asks for (and one script checks).
const SCAN_BATCH: usize = 500;

impl Store {
    /// Deletes every uniqueness key whose task is gone or no longer queued,
    /// scheduled or running; returns how many. Walks the keys with `SCAN`,
    /// one batch per script, so it never blocks Redis for long.
    pub fn free_stale_unique_keys(&self) -> Result<u64, StoreError> {
        Ok(self.each(Part::free_stale_unique_keys)?.into_iter().sum())
    }
}

impl Part {
    pub(crate) fn free_stale_unique_keys(&self) -> Result<u64, StoreError> {
        let pattern = format!("{}*", glob_escape(&self.keys().unique("")));
        let mut cursor: u64 = 0;
        let mut freed = 0;
        loop {
            let (next, found): (u64, Vec<String>) = self.read(&[], |c, _| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_BATCH)
                    .query(c)
            })?;
            if !found.is_empty() {
                freed += self.run(&[], |c, keys| {
                    let mut inv = scripts::FREE_STALE_UNIQUE.prepare_invoke();
                    inv.arg(keys.prefix());
                    for key in &found {
                        inv.arg(key);
                    }
                    inv.invoke::<u64>(c)
                })?;
            }
            if next == 0 {
                return Ok(freed);
            }
            cursor = next;
        }
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(super::glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(super::glob_escape("rt:unique:"), "rt:unique:");
    }
}
