//! Reading what a user points the CLI at (job files, passwords on stdin) with a size cap, so a wrong path
//! (`/dev/zero`, a disk image) costs at most the cap, and the error names the file and the limit.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// Largest job file read: a job bigger than the largest frame could not be sent anyway.
pub const MAX_JOB_FILE_BYTES: u64 = shotline_protocol::wire::DEFAULT_MAX_FRAME as u64;
/// Longest password line read from stdin.
pub const MAX_PASSWORD_BYTES: u64 = 4096;

/// Reads the file at `path` as text, refusing more than `limit` bytes.
pub fn read_text_capped(path: &Path, limit: u64, what: &str) -> anyhow::Result<String> {
    let bytes = shotline_tls::private_fs::read_capped(path, limit)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    String::from_utf8(bytes)
        .with_context(|| format!("the {what} {} is not UTF-8 text", path.display()))
}

/// Reads one line (without its line end) from `input`, refusing one longer than `limit` bytes.
pub fn read_line_capped(input: impl Read, limit: u64, what: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let mut capped = input.take(limit + 2);
    let mut byte = [0u8; 1];
    while capped.read(&mut byte)? == 1 {
        if byte[0] == b'\n' {
            break;
        }
        bytes.push(byte[0]);
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if bytes.len() as u64 > limit {
        anyhow::bail!("the {what} is longer than the limit of {limit} bytes");
    }
    String::from_utf8(bytes).with_context(|| format!("the {what} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_files_are_capped() {
        assert_eq!(
            read_line_capped(&b"secret\r\nrest"[..], 10, "password").unwrap(),
            "secret"
        );
        let e = read_line_capped(std::io::repeat(b'x'), 4096, "password").unwrap_err();
        assert!(e.to_string().contains("limit of 4096 bytes"), "{e}");
        let e = read_text_capped(Path::new("/dev/zero"), 1024, "job file").unwrap_err();
        assert!(format!("{e:#}").contains("limit of 1024 bytes"), "{e:#}");
    }
}
