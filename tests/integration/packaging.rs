//! What publishing and users' toolchains rely on:
//!
//! - the declared `rust-version` is true: no locked dependency needs a newer
//!   compiler than the one the workspace promises (read from `cargo
//!   metadata`, so a `cargo update` that raises a minimum fails here, not on
//!   a user's older toolchain);
//! - every crate of the workspace packages for crates.io, in dependency
//!   order, with the metadata crates.io needs (`cargo package --workspace`,
//!   offline, without building).

use std::process::Command;

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

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
    let out = cargo()
        // Not `--offline`: metadata reads the manifests of every locked
        // package, those of other platforms too, which a build never
        // downloads (a fresh machine has only what it built).
        .args(["metadata", "--format-version", "1", "--locked"])
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
            (want > ours)
                .then(|| format!("{} {} needs {}", p["name"], p["version"], p["rust_version"]))
        })
        .collect();
    assert!(
        needed.is_empty(),
        "Cargo.toml says rust-version {ours:?}, but:\n{}",
        needed.join("\n")
    );
    assert!(
        packages.len() > 50,
        "the graph looks too small to be the real one"
    );
}

#[test]
fn every_crate_packages_for_publishing() {
    let target = tempfile::tempdir().expect("temp dir");
    let out = cargo()
        .args([
            "package",
            "--workspace",
            // The guide's application is not published.
            "--exclude",
            "thumbs",
            "--no-verify",
            "--locked",
            "--offline",
        ])
        .args(["--allow-dirty", "--target-dir"])
        .arg(target.path())
        .output()
        .expect("run cargo package");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package failed:\n{stderr}");
    assert!(
        !stderr.contains("warning"),
        "cargo package warned:\n{stderr}"
    );
    for krate in [
        "redis-tasks-protocol",
        "redis-tasks-config",
        "redis-tasks-store",
        "redis-tasks-worker",
        "redis-tasks-supervisor",
        "redis-tasks-dashboard",
        "redis-tasks",
    ] {
        let file = target
            .path()
            .join("package")
            .join(format!("{krate}-{}.crate", env!("CARGO_PKG_VERSION")));
        assert!(file.is_file(), "no {}:\n{stderr}", file.display());
    }
}
