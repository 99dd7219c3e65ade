//! Where `enqueue` reads a task's arguments from: the command line, a
//! file (`@path`) or standard input (`-`), so that large arguments do not
//! hit the shell's limit on a command line. Reading stops one byte past
//! `max_args_bytes`, so a huge file is refused without being read whole.

use std::io::Read;

use anyhow::Context as _;

/// The JSON text of `spec`: `-` reads standard input, `@path` the file
/// `path`, anything else is the JSON itself. Over `limit` bytes is an
/// error naming `max_args_bytes`.
pub(super) fn read_args(spec: &str, limit: u64) -> anyhow::Result<String> {
    let (source, reader): (String, Box<dyn Read>) = if spec == "-" {
        ("standard input".to_owned(), Box::new(std::io::stdin()))
    } else if let Some(path) = spec.strip_prefix('@') {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read arguments from {path}"))?;
        (path.to_owned(), Box::new(file))
    } else {
        return Ok(spec.to_owned());
    };
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read arguments from {source}"))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        anyhow::bail!(
            "the arguments in {source} are over max_args_bytes ({limit} bytes); raise the setting \
             or pass less"
        );
    }
    String::from_utf8(bytes).with_context(|| format!("the arguments in {source} are not UTF-8"))
}
