//! docs/guide.md cannot drift from code that compiles: every Rust snippet
//! of the guide names its file on its first line (`// src/lib.rs`, or
//! `// src/producer.rs, continued` for a later part of a file), and stands
//! to the letter in that file of `examples/thumbs/`, the guide's
//! application, which the workspace builds and tests (`cargo test
//! --workspace` runs its `tests/tasks.rs`).

use std::path::Path;

/// The ```rust blocks of `text`, in order.
fn rust_snippets(text: &str) -> Vec<String> {
    let mut snippets = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(_), "```") => snippets.extend(current.take()),
            (Some(body), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```rust block in the guide");
    snippets
}

#[test]
fn every_rust_snippet_of_the_guide_is_part_of_a_compiled_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/guide.md")).expect("read the guide");
    let snippets = rust_snippets(&guide);
    assert!(
        snippets.len() >= 7,
        "only {} Rust snippets found",
        snippets.len()
    );
    for snippet in snippets {
        let first = snippet.lines().next().unwrap_or("");
        let path = first
            .strip_prefix("// ")
            .and_then(|rest| rest.split([',', ' ']).next())
            .filter(|p| p.ends_with(".rs"))
            .unwrap_or_else(|| panic!("a guide snippet does not name its file:\n{snippet}"));
        let file = root.join("examples/thumbs").join(path);
        let code = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (named by a guide snippet)", file.display()));
        // A first part keeps its naming line (the file has it too); a
        // continued part is checked without it.
        let body = if code.starts_with(first) {
            snippet.as_str()
        } else {
            snippet.split_once('\n').map_or("", |(_, rest)| rest)
        };
        assert!(
            code.contains(body),
            "this guide snippet is not in {} as written:\n{snippet}",
            file.display()
        );
    }
}
