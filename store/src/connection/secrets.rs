//! Secret files: password files (`redis_password_file`,
//! `redis_sentinel_password_file`) read at first use, kept, and read again
//! by [`reload_password_files`] (SIGHUP); and the check that a secret file
//! (those two, TLS private keys, the dashboard's token file) is not
//! readable by group or others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::StoreError;

pub(super) fn read_file(path: &Path, setting: &'static str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|error| StoreError::ConfigFile {
        setting,
        path: path.to_path_buf(),
        error,
    })
}

/// Passwords read from password files in this process, by file.
fn passwords() -> &'static Mutex<BTreeMap<PathBuf, String>> {
    static PASSWORDS: OnceLock<Mutex<BTreeMap<PathBuf, String>>> = OnceLock::new();
    PASSWORDS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The password in force for `path`: read at first use, then kept until
/// [`reload_password_files`].
pub(super) fn current_password(path: &Path) -> Result<String, StoreError> {
    let mut map = passwords()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(password) = map.get(path) {
        return Ok(password.clone());
    }
    check_secret_file(path, "password file");
    let password = crate::read_password(path)?;
    map.insert(path.to_path_buf(), password.clone());
    Ok(password)
}

/// Reads every password file this process uses again (SIGHUP). A file
/// that cannot be read keeps its old password in force; the errors are
/// returned so that the caller can log them. Connections already open stay
/// open; new ones use the new password.
pub fn reload_password_files() -> Vec<StoreError> {
    let mut map = passwords()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut errors = Vec::new();
    for (path, password) in map.iter_mut() {
        check_secret_file(path, "password file");
        match crate::read_password(path) {
            Ok(new) => *password = new,
            Err(e) => errors.push(e),
        }
    }
    errors
}

/// Files already warned about in this process (one warning per file).
fn warned() -> &'static Mutex<BTreeMap<PathBuf, ()>> {
    static WARNED: OnceLock<Mutex<BTreeMap<PathBuf, ()>>> = OnceLock::new();
    WARNED.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// What is wrong with the permissions of secret file `path` (given by
/// `setting`), if anything: like ssh with a private key, a secret that
/// group or others may read (or write) is one that other accounts of the
/// host may already have.
pub fn secret_file_problem(path: &Path, setting: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path).ok()?.mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{setting} {} is open to group or others (mode {:04o}); other accounts on this host \
             may read the secret: chmod 600 it",
            path.display(),
            mode & 0o7777
        )
    })
}

/// Logs [`secret_file_problem`] as a warning, once per file per process.
/// The file is used all the same (refusing would stop services whose
/// secrets were set up before this check); see docs/security.md.
pub fn check_secret_file(path: &Path, setting: &str) {
    let Some(problem) = secret_file_problem(path, setting) else {
        return;
    };
    let mut warned = warned()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.insert(path.to_path_buf(), ()).is_none() {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_secret_open_to_others_is_named_with_its_mode() {
        let path =
            std::env::temp_dir().join(format!("redis-tasks-secret-test-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").expect("write");
        for (mode, open) in [
            (0o600, false),
            (0o400, false),
            (0o640, true),
            (0o644, true),
            (0o602, true),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let problem = secret_file_problem(&path, "redis_password_file");
            assert_eq!(problem.is_some(), open, "{mode:o}: {problem:?}");
            if let Some(problem) = problem {
                assert!(problem.contains(&format!("{mode:04o}")), "{problem}");
                assert!(problem.contains("redis_password_file"), "{problem}");
                assert!(!problem.contains("s3cret"), "{problem}");
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}
