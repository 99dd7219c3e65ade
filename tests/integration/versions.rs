//! The declared `rust-version` is true: no locked dependency needs a newer
//! compiler than the one the workspace promises in its `Cargo.toml`.
//!
//! The check reads `cargo metadata` for the locked dependency graph, so a
//! `cargo update` that raises a dependency's minimum fails here instead of
//! on a user's older toolchain.

use std::process::Command;

/// A `major.minor[.patch]` version as three numbers (patch 0 when absent).
fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.trim().split('.').map(str::parse::<u64>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

#[test]
fn declared_rust_version_covers_every_locked_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "redis-tasks")
        .and_then(|p| p["rust_version"].as_str())
        .and_then(parse)
        .expect("redis-tasks declares a rust-version");
    let needed: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let want = parse(p["rust_version"].as_str()?)?;
            (want > ours).then(|| format!("{} {} needs {}", p["name"], p["version"], p["rust_version"]))
        })
        .collect();
    assert!(
        needed.is_empty(),
        "Cargo.toml says rust-version {ours:?}, but:\n{}",
        needed.join("\n")
    );
    assert!(packages.len() > 50, "the graph looks too small to be the real one");
}
