//! Key files.
//!
//! A key file is a small JSON object:
//!
//! ```json
//! {
//!   "type": "phalanx-ed25519-key",
//!   "version": 1,
//!   "public_key": "<64 lowercase hex: the 32-byte ed25519 public key>",
//!   "secret_key": "<64 lowercase hex: the 32-byte RFC 8032 secret seed>"
//! }
//! ```
//!
//! Unknown fields are refused. On load, the public key is derived again from
//! the secret and must equal `public_key`, so a damaged file is caught
//! instead of signing under an unexpected key. Files are created with mode
//! 0600 and never overwritten; loading a file that its group or others can
//! read or write succeeds with a warning (logged, and returned to the caller).

use crate::keys::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The value of the `type` field.
pub const KEY_FILE_TYPE: &str = "phalanx-ed25519-key";
/// The format version this code writes and reads.
pub const KEY_FILE_VERSION: u32 = 1;
/// A key file longer than this is refused unread.
pub const KEY_FILE_MAX_BYTES: u64 = 4096;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    public_key: PublicKey,
    secret_key: String,
}

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite a key file")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: larger than {KEY_FILE_MAX_BYTES} bytes, not a key file")]
    TooLarge { path: PathBuf },
    #[error("{path}: not a valid key file: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error(
        "{path}: unsupported key file type {kind:?} version {version} (expected {KEY_FILE_TYPE:?} version {KEY_FILE_VERSION})"
    )]
    Unsupported {
        path: PathBuf,
        kind: String,
        version: u32,
    },
    #[error(
        "{path}: public_key {stored} does not match the secret key, whose public key is {derived}"
    )]
    PublicKeyMismatch {
        path: PathBuf,
        stored: PublicKey,
        derived: PublicKey,
    },
}

/// A key file that group or others may read or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsecurePermissions {
    pub path: PathBuf,
    /// The file's permission bits, e.g. `0o644`.
    pub mode: u32,
}

impl std::fmt::Display for InsecurePermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key file {} has permissions {:04o}: others can read it; run `chmod 600 {}`",
            self.path.display(),
            self.mode,
            self.path.display()
        )
    }
}

/// A loaded key and what was wrong with its file, if anything.
#[derive(Debug)]
pub struct LoadedKey {
    pub keypair: Keypair,
    pub warning: Option<InsecurePermissions>,
}

/// Writes `keypair` to a new file at `path` with mode 0600. Fails if the
/// file exists.
pub fn write_key_file(path: &Path, keypair: &Keypair) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let json = KeyFileJson {
        kind: KEY_FILE_TYPE.to_owned(),
        version: KEY_FILE_VERSION,
        public_key: keypair.public(),
        secret_key: hex::encode(*keypair.seed()),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&json).map_err(|e| {
        KeyFileError::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?);
    let mut secret = json.secret_key;
    zeroize::Zeroize::zeroize(&mut secret);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => io(e),
    })?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a key file. Logs a warning (and returns it) if the file's
/// permissions let others read it.
pub fn load_key_file(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let warning = insecure_permissions(path, &file).map_err(io)?;
    let mut text = Zeroizing::new(String::new());
    file.take(KEY_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > KEY_FILE_MAX_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let keypair = parse_key_file(path, &text)?;
    if let Some(warning) = &warning {
        tracing::warn!("{warning}");
    }
    Ok(LoadedKey { keypair, warning })
}

fn parse_key_file(path: &Path, text: &str) -> Result<Keypair, KeyFileError> {
    let malformed = |message: String| KeyFileError::Malformed {
        path: path.to_owned(),
        message,
    };
    let mut json: KeyFileJson = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    if json.kind != KEY_FILE_TYPE || json.version != KEY_FILE_VERSION {
        return Err(KeyFileError::Unsupported {
            path: path.to_owned(),
            kind: json.kind,
            version: json.version,
        });
    }
    let seed = Zeroizing::new(
        crate::fixed_bytes::parse_hex::<32>(&json.secret_key)
            .map_err(|e| malformed(format!("secret_key: {e}")))?,
    );
    zeroize::Zeroize::zeroize(&mut json.secret_key);
    let keypair = Keypair::from_seed(&seed);
    if keypair.public() != json.public_key {
        return Err(KeyFileError::PublicKeyMismatch {
            path: path.to_owned(),
            stored: json.public_key,
            derived: keypair.public(),
        });
    }
    Ok(keypair)
}

#[cfg(unix)]
fn insecure_permissions(
    path: &Path,
    file: &std::fs::File,
) -> std::io::Result<Option<InsecurePermissions>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    Ok((mode & 0o077 != 0).then(|| InsecurePermissions {
        path: path.to_owned(),
        mode,
    }))
}

#[cfg(not(unix))]
fn insecure_permissions(
    _path: &Path,
    _file: &std::fs::File,
) -> std::io::Result<Option<InsecurePermissions>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let kp = Keypair::from_seed(&[5; 32]);
        write_key_file(&path, &kp).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.keypair.public(), kp.public());
        assert_eq!(loaded.warning, None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"type\": \"phalanx-ed25519-key\""));
        assert!(text.contains(&hex::encode([5u8; 32])));
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        write_key_file(&path, &Keypair::from_seed(&[1; 32])).unwrap();
        let err = write_key_file(&path, &Keypair::from_seed(&[2; 32])).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists { .. }), "{err}");
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(
            loaded.keypair.public(),
            Keypair::from_seed(&[1; 32]).public()
        );
    }

    #[test]
    fn world_readable_file_loads_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        write_key_file(&path, &Keypair::from_seed(&[3; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = load_key_file(&path).unwrap();
        let warning = loaded.warning.unwrap();
        assert_eq!(warning.mode, 0o644);
        assert!(warning.to_string().contains("chmod 600"));
    }

    #[test]
    fn damaged_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::from_seed(&[4; 32]);
        let good = format!(
            r#"{{"type":"phalanx-ed25519-key","version":1,"public_key":"{}","secret_key":"{}"}}"#,
            kp.public(),
            hex::encode(*kp.seed())
        );
        let cases: Vec<(&str, String)> = vec![
            ("truncated", good[..good.len() - 10].to_owned()),
            (
                "unknown field",
                good.replace("\"version\":1", "\"version\":1,\"extra\":0"),
            ),
            (
                "bad version",
                good.replace("\"version\":1", "\"version\":9"),
            ),
            (
                "bad hex",
                good.replace(&hex::encode(*kp.seed()), &"zz".repeat(32)),
            ),
            (
                "mismatch",
                good.replace(
                    &kp.public().to_string(),
                    &Keypair::from_seed(&[9; 32]).public().to_string(),
                ),
            ),
            ("huge", " ".repeat(5000) + &good),
        ];
        for (name, text) in cases {
            let path = dir.path().join(name.replace(' ', "_"));
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_key_file(&path).unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.contains(&path.display().to_string()),
                "{name}: {shown}"
            );
            match name {
                "bad version" => assert!(matches!(err, KeyFileError::Unsupported { .. })),
                "mismatch" => assert!(matches!(err, KeyFileError::PublicKeyMismatch { .. })),
                "huge" => assert!(matches!(err, KeyFileError::TooLarge { .. })),
                _ => assert!(
                    matches!(err, KeyFileError::Malformed { .. }),
                    "{name}: {shown}"
                ),
            }
        }
        let missing = load_key_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, KeyFileError::Io { .. }));
    }
}
