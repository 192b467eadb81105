//! Shared-secret files in perfSONAR's pass-phrase format: one identity per line, whitespace,
//! then the passphrase's octets in hex; `#` starts a comment. Identities match exactly
//! (perfSONAR matches by prefix, which lets `alic` borrow `alice`'s key; we do not).
//!
//! The file must not be readable or writable by group or others: a secret that anybody on the
//! host can read authenticates nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ippm_proto::session::{PassphraseStore, Secret};
use zeroize::Zeroizing;

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error(
        "key file {path} has mode {mode:o}; it must not be accessible to group or others \
         (chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not `identity hex-passphrase`.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the secret).
        reason: &'static str,
    },
}

/// Reads a key file, checking its permissions.
pub fn load(path: &Path) -> Result<PassphraseStore, KeyFileError> {
    let raw = read_secret(path)?;
    let text = std::str::from_utf8(&raw).map_err(|_| KeyFileError::Syntax {
        path: path.to_owned(),
        line: 0,
        reason: "not UTF-8 text",
    })?;
    parse(text).map_err(|(line, reason)| KeyFileError::Syntax {
        path: path.to_owned(),
        line,
        reason,
    })
}

/// Reads a file holding a secret (a key file, a key in hex), refusing one that group or
/// others may read or write; trailing whitespace is dropped. The octets are zeroized when
/// dropped.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut v = Zeroizing::new(fs::read(path).map_err(io)?);
    while v.last().is_some_and(u8::is_ascii_whitespace) {
        v.pop();
    }
    Ok(v)
}

/// Reads a STAMP HMAC key: a file (mode 600) holding the key in hex, as stamp-suite and
/// routers take it.
pub fn stamp_key(path: &Path) -> Result<ippm_proto::stamp::StampKey, KeyFileError> {
    let raw = read_secret(path)?;
    let syntax = |reason| KeyFileError::Syntax {
        path: path.to_owned(),
        line: 1,
        reason,
    };
    let text = std::str::from_utf8(&raw).map_err(|_| syntax("not a key in hex"))?;
    ippm_proto::stamp::StampKey::from_hex(text).map_err(|e| match e {
        ippm_proto::stamp::StampError::BadKey(why) => syntax(why),
        _ => syntax("not a key in hex"),
    })
}

/// Parses the text of a key file; errors name the line.
pub fn parse(text: &str) -> Result<PassphraseStore, (usize, &'static str)> {
    let mut store = PassphraseStore::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(id), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err((
                i + 1,
                "expected: identity, whitespace, hex of the passphrase",
            ));
        };
        if id.len() > 80 {
            return Err((i + 1, "identity longer than 80 octets (the KeyID field)"));
        }
        let secret =
            decode_hex(hex).ok_or((i + 1, "passphrase is not an even number of hex digits"))?;
        if secret.is_empty() {
            return Err((i + 1, "empty passphrase"));
        }
        store.insert(id.as_bytes().to_vec(), Secret::new(secret));
    }
    Ok(store)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use ippm_proto::session::SecretStore;

    use super::*;

    #[test]
    fn perfsonar_format() {
        // The captures' pass-phrase file (INDEX.md).
        let s = parse(
            "# comment\nalice\t636f727265637420686f727365206261747465727920737461706c65\n\n\
             bob 626f622d736563726574  # trailing comment\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.passphrase(b"alice").unwrap().expose(),
            b"correct horse battery staple"
        );
        assert_eq!(s.passphrase(b"bob").unwrap().expose(), b"bob-secret");
        // Exact match only: perfSONAR's prefix match is a defect we do not copy.
        assert!(s.passphrase(b"alic").is_none());
        assert!(s.passphrase(b"alicex").is_none());
    }

    #[test]
    fn syntax_errors_name_the_line_not_the_secret() {
        assert_eq!(
            parse("alice 0g").err(),
            Some((1, "passphrase is not an even number of hex digits"))
        );
        assert_eq!(parse("\nalice").err().map(|e| e.0), Some(2));
        assert_eq!(parse("alice 6162 extra").err().map(|e| e.0), Some(1));
        assert!(parse(&format!("{} 61", "x".repeat(81))).is_err());
    }

    #[test]
    fn permissions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.pfs");
        let mut f = fs::File::create(&path).unwrap();
        writeln!(f, "alice 616263").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load(&path).unwrap().passphrase(b"alice").unwrap().expose(),
            b"abc"
        );
        assert!(matches!(
            load(&dir.path().join("none")),
            Err(KeyFileError::Io { .. })
        ));
    }
}
