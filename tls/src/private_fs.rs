//! Private files and directories: secrets (tokens, pins, keys) and data files are created with their
//! final mode from the start (files 0600, directories 0700), whatever the process umask, so no other
//! local user can ever open them, not even for the moment between creation and a `chmod`.
//!
//! Every file shotline writes that holds a secret or user data goes through [`write_private_file`] or
//! [`create_private_new`], and every directory holding them through [`create_private_dir`]. Files read from
//! paths a user gives are read with [`read_capped`].

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every private file.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every private directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

fn mode_of(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        PRIVATE_FILE_MODE
    }
}

/// Creates `dir` (and missing parents) with mode 0700. An existing directory that group or others can
/// access is tightened to 0700 (with a warning): shotline's directories hold tokens, keys and job data,
/// so they are never shared. If it cannot be tightened (e.g. not owned by this user) this fails with a
/// message naming the directory, its mode and what to do.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(dir)?;
    let meta = fs::metadata(dir)?;
    let mode = mode_of(&meta);
    if mode & 0o077 != 0 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let tightened = mode & !0o077 & 0o7777;
            if let Err(e) = fs::set_permissions(dir, fs::Permissions::from_mode(tightened)) {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "directory {} has mode {mode:o} (group/others can access it) and cannot be \
                         restricted to {tightened:o}: {e}; run `chmod go= {}` or choose another directory",
                        dir.display(),
                        dir.display()
                    ),
                ));
            }
            tracing::warn!(
                dir = %dir.display(),
                old_mode = format!("{mode:o}"),
                new_mode = format!("{tightened:o}"),
                "directory was accessible by group/others; restricted it to its owner"
            );
        }
    }
    Ok(())
}

/// Restricts an existing file to its owner (mode 0600) if group or others can access it; a missing file
/// is fine. Used on files an older version created with a wider mode.
pub fn tighten_file(path: &Path) -> std::io::Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = mode_of(&meta);
    if mode & 0o077 != 0 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
            tracing::warn!(
                file = %path.display(),
                old_mode = format!("{mode:o}"),
                "file was accessible by group/others; restricted it to its owner (600)"
            );
        }
    }
    Ok(())
}

/// Opens a new file at `path` for writing with mode 0600 from its creation (`O_CREAT|O_EXCL`); fails if
/// the path exists. Checks the mode of the open file, so a file that others could open is never returned.
pub fn create_private_new(path: &Path) -> std::io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(PRIVATE_FILE_MODE);
    }
    let f = opts.open(path)?;
    let mode = mode_of(&f.metadata()?);
    if mode & 0o077 != 0 {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(std::io::Error::other(format!(
            "{} was created with mode {mode:o} instead of {PRIVATE_FILE_MODE:o}",
            path.display()
        )));
    }
    Ok(f)
}

/// A fresh temporary name next to `path`: `<name>.tmp.<pid>.<n>`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically and privately: a new temporary file next to it created with mode
/// 0600 (`create_new`), written, fsynced, renamed over `path`, then the directory fsynced. Readers see the
/// old or the new content, never a partial file, and the content is never readable by others.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    // A stale temporary file of a crashed process with the same pid: start from scratch.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let written = (|| {
        let mut f = create_private_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads the file at `path`, refusing one larger than `limit` bytes (read with a cap, so `/dev/zero` or a
/// huge file costs at most `limit + 1` bytes). The error names the file and the limit.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is larger than the limit of {limit} bytes; is it the right file?",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dir_is_0700_and_an_open_one_is_tightened() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        create_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
    }

    #[test]
    fn private_file_is_0600_from_creation_and_replaced_atomically() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("secret.json");
        // Even a file created open to everyone before is replaced by a private one.
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o600);
        // The temporary file is private from the moment it exists.
        let tmp = t.path().join("probe.tmp");
        let f = create_private_new(&tmp).unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("secret.json.tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn read_capped_refuses_big_and_endless_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, vec![b'x'; 11]).unwrap();
        assert_eq!(read_capped(&p, 11).unwrap().len(), 11);
        let e = read_capped(&p, 10).unwrap_err();
        assert!(e.to_string().contains("limit of 10 bytes"), "{e}");
        let e = read_capped(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(e.to_string().contains("/dev/zero"), "{e}");
    }
}
