//! Keeps a node's data private to the account it runs as: the store holds mail and
//! password hashes, the TLS directory a private key. Everything the process creates is
//! made without group or other permissions (umask 077), and at start the data
//! directory is checked: anything loosened since (a restore, a careless `chmod`) is
//! tightened again, with a warning naming it.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// New files 0600 and directories 0700, whatever the caller's umask.
pub fn restrict_new_files() {
    // SAFETY: umask only changes this process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Removes group and other permissions from `dir` and everything below it (symbolic
/// links are left alone); returns the paths it had to change.
pub fn tighten(dir: &Path) -> io::Result<Vec<String>> {
    let mut changed = Vec::new();
    tighten_into(dir, &mut changed)?;
    Ok(changed)
}

fn tighten_into(path: &Path, changed: &mut Vec<String>) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700))?;
        changed.push(format!("{} ({:o})", path.display(), mode & 0o777));
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten_into(&entry?.path(), changed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loosened_paths_are_tightened_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        std::fs::write(store.join("db"), b"x").unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(store.join("db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let changed = tighten(dir.path()).unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join("db")), 0o600);
        assert!(tighten(dir.path()).unwrap().is_empty());
    }
}
