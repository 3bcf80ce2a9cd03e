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
//!
//! # Encrypted key files (version 2)
//!
//! A version-2 file keeps the public key in clear (so a wallet can list its
//! addresses without a passphrase) and seals the 32-byte seed:
//!
//! ```json
//! {
//!   "type": "phalanx-ed25519-key",
//!   "version": 2,
//!   "public_key": "<64 hex>",
//!   "kdf": {
//!     "algorithm": "argon2id", "version": 19,
//!     "memory_kib": 65536, "iterations": 3, "parallelism": 1,
//!     "salt": "<32 hex: 16 random bytes>"
//!   },
//!   "cipher": {
//!     "algorithm": "xchacha20-poly1305",
//!     "nonce": "<48 hex: 24 random bytes>",
//!     "ciphertext": "<96 hex: the sealed 32-byte seed, then the 16-byte tag>"
//!   }
//! }
//! ```
//!
//! The 32-byte key is argon2id (version 0x13 = 19) of the passphrase's
//! UTF-8 bytes with the salt and the costs shown; the seed is sealed with
//! XChaCha20-Poly1305 under that key and the nonce, with the associated
//! data `"PHALANX/KEYFILE/v2"` ‖ the 32 public key bytes. Changing the
//! public key in clear therefore fails authentication like a wrong
//! passphrase does, and so does changing a cost or the salt (they change
//! the derived key). After decryption the public key is derived from the
//! seed and compared with `public_key` as in version 1. Costs above
//! [`KdfParams::MAX_MEMORY_KIB`], [`KdfParams::MAX_ITERATIONS`] or
//! [`KdfParams::MAX_PARALLELISM`] are refused before any work, so a hostile
//! file cannot make its reader allocate without bound. The derived key,
//! the decrypted seed and the argon2 memory are zeroed after use.
//!
//! [`load_key_file`] reads version 1 only (a node's key is never
//! encrypted) and names a version-2 file as such; [`read_key_file`] reads
//! both and leaves decryption to the caller, who has the passphrase.

use crate::keys::{Keypair, PublicKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
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
/// The format version of encrypted key files.
pub const ENCRYPTED_KEY_FILE_VERSION: u32 = 2;
/// The `kdf.algorithm` of version-2 files.
pub const KDF_ALGORITHM: &str = "argon2id";
/// The `kdf.version` of version-2 files: argon2 version 0x13.
pub const KDF_VERSION: u32 = 0x13;
/// The `cipher.algorithm` of version-2 files.
pub const CIPHER_ALGORITHM: &str = "xchacha20-poly1305";
/// The associated data of the seal starts with this tag; the public key
/// follows.
const SEAL_AAD_TAG: &[u8] = b"PHALANX/KEYFILE/v2";
const SALT_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;
/// The sealed seed (32 bytes) followed by the Poly1305 tag (16 bytes).
const SEALED_BYTES: usize = 48;

/// The fields every version has, read first to choose the format.
#[derive(Deserialize)]
struct KeyFileHeader {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
}

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
    #[error(
        "{path}: an encrypted key file (version {ENCRYPTED_KEY_FILE_VERSION}); this program needs an unencrypted one (version {KEY_FILE_VERSION})"
    )]
    Encrypted { path: PathBuf },
    #[error(
        "{path}: unsupported key file type {kind:?} version {version} (expected {KEY_FILE_TYPE:?} version {KEY_FILE_VERSION} or {ENCRYPTED_KEY_FILE_VERSION})"
    )]
    UnsupportedVersion {
        path: PathBuf,
        kind: String,
        version: u32,
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
    write_new_file(path, &text)
}

/// Creates `path` with mode 0600 (failing if it exists), writes `text` and
/// a newline, and syncs.
fn write_new_file(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
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

/// Reads an unencrypted (version 1) key file. Logs a warning (and returns
/// it) if the file's permissions let others read it. A version-2 file is
/// refused as [`KeyFileError::Encrypted`].
pub fn load_key_file(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let (text, warning) = read_bounded(path)?;
    let header = parse_header(path, &text)?;
    if header.kind == KEY_FILE_TYPE && header.version == ENCRYPTED_KEY_FILE_VERSION {
        return Err(KeyFileError::Encrypted {
            path: path.to_owned(),
        });
    }
    let keypair = parse_key_file(path, &text)?;
    if let Some(warning) = &warning {
        tracing::warn!("{warning}");
    }
    Ok(LoadedKey { keypair, warning })
}

/// Reads a file of at most [`KEY_FILE_MAX_BYTES`] into a zeroized string,
/// with a warning if its permissions let others read it.
fn read_bounded(
    path: &Path,
) -> Result<(Zeroizing<String>, Option<InsecurePermissions>), KeyFileError> {
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
    Ok((text, warning))
}

fn parse_header(path: &Path, text: &str) -> Result<KeyFileHeader, KeyFileError> {
    serde_json::from_str(text).map_err(|e| KeyFileError::Malformed {
        path: path.to_owned(),
        message: e.to_string(),
    })
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

/// argon2id costs of a version-2 key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB (argon2's `m`).
    pub memory_kib: u32,
    /// Passes over the memory (argon2's `t`).
    pub iterations: u32,
    /// Lanes (argon2's `p`).
    pub parallelism: u32,
}

impl KdfParams {
    /// What [`EncryptedKey::seal`] uses by default: 64 MiB, 3 passes, 1
    /// lane (RFC 9106's second recommended setting, with one lane because
    /// this argon2 runs its lanes one after the other).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// The most memory a file may ask for: 1 GiB.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes a file may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a file may ask for.
    pub const MAX_PARALLELISM: u32 = 16;

    /// The argon2 parameters, if these costs are within argon2's rules and
    /// this module's bounds.
    fn argon2(&self) -> Result<argon2::Params, String> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(format!(
                "argon2id costs {self:?} exceed the bounds (memory_kib <= {}, iterations <= {}, parallelism <= {})",
                Self::MAX_MEMORY_KIB,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM
            ));
        }
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| format!("argon2id costs {self:?}: {e}"))
    }
}

/// Why a key could not be sealed or opened with a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("wrong passphrase: the key does not decrypt with it (or the key file was altered)")]
    WrongPassphrase,
    #[error("invalid key derivation parameters: {0}")]
    BadParams(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
    #[error(
        "the decrypted secret key's public key {derived} is not the file's public_key {stored}"
    )]
    PublicKeyMismatch {
        stored: PublicKey,
        derived: PublicKey,
    },
}

/// A key sealed under a passphrase: the content of a version-2 key file.
/// Holds nothing secret (the seed is encrypted), so it may be cloned and
/// shown freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedKey {
    public_key: PublicKey,
    kdf: KdfParams,
    salt: [u8; SALT_BYTES],
    nonce: [u8; NONCE_BYTES],
    sealed: [u8; SEALED_BYTES],
}

impl EncryptedKey {
    /// Seals `keypair`'s seed under `passphrase` with a fresh random salt
    /// and nonce.
    pub fn seal(
        keypair: &Keypair,
        passphrase: &[u8],
        kdf: KdfParams,
    ) -> Result<EncryptedKey, SealError> {
        let mut salt = [0u8; SALT_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        for buffer in [&mut salt[..], &mut nonce[..]] {
            getrandom::fill(buffer).map_err(|e| SealError::Randomness(e.to_string()))?;
        }
        let public_key = keypair.public();
        let cipher = cipher(passphrase, &salt, kdf)?;
        let seed = keypair.seed();
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: seed.as_slice(),
                    aad: &seal_aad(&public_key),
                },
            )
            .map_err(|_| SealError::Kdf("XChaCha20-Poly1305 refused to encrypt".into()))?;
        let sealed: [u8; SEALED_BYTES] = sealed.as_slice().try_into().map_err(|_| {
            SealError::Kdf(format!(
                "sealed seed is {} bytes, not {SEALED_BYTES}",
                sealed.len()
            ))
        })?;
        Ok(EncryptedKey {
            public_key,
            kdf,
            salt,
            nonce,
            sealed,
        })
    }

    /// The key's public key, stored in clear.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The argon2id costs the key was sealed with.
    pub fn kdf(&self) -> KdfParams {
        self.kdf
    }

    /// Decrypts the seed with `passphrase` and checks that it gives the
    /// stored public key.
    pub fn open(&self, passphrase: &[u8]) -> Result<Keypair, SealError> {
        let cipher = cipher(passphrase, &self.salt, self.kdf)?;
        let seed = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(self.nonce),
                    Payload {
                        msg: &self.sealed,
                        aad: &seal_aad(&self.public_key),
                    },
                )
                .map_err(|_| SealError::WrongPassphrase)?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.as_slice()
                .try_into()
                .map_err(|_| SealError::WrongPassphrase)?,
        );
        let keypair = Keypair::from_seed(&seed);
        if keypair.public() != self.public_key {
            return Err(SealError::PublicKeyMismatch {
                stored: self.public_key,
                derived: keypair.public(),
            });
        }
        Ok(keypair)
    }
}

/// argon2id of the passphrase, as an XChaCha20-Poly1305 cipher. The
/// derived key and argon2's memory are zeroed once the cipher holds the key
/// (and the cipher zeroes its copy when dropped).
fn cipher(passphrase: &[u8], salt: &[u8], kdf: KdfParams) -> Result<XChaCha20Poly1305, SealError> {
    let params = kdf.argon2().map_err(SealError::BadParams)?;
    let mut memory = Zeroizing::new(vec![argon2::Block::default(); params.block_count()]);
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(passphrase, salt, key.as_mut_slice(), memory.as_mut_slice())
        .map_err(|e| SealError::Kdf(e.to_string()))?;
    XChaCha20Poly1305::new_from_slice(key.as_slice())
        .map_err(|_| SealError::Kdf("derived key has the wrong length".into()))
}

fn seal_aad(public_key: &PublicKey) -> Vec<u8> {
    [SEAL_AAD_TAG, public_key.as_bytes().as_slice()].concat()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptedKeyFileJson {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    public_key: PublicKey,
    kdf: KdfJson,
    cipher: CipherJson,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    algorithm: String,
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherJson {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

impl From<&EncryptedKey> for EncryptedKeyFileJson {
    fn from(key: &EncryptedKey) -> Self {
        EncryptedKeyFileJson {
            kind: KEY_FILE_TYPE.to_owned(),
            version: ENCRYPTED_KEY_FILE_VERSION,
            public_key: key.public_key,
            kdf: KdfJson {
                algorithm: KDF_ALGORITHM.to_owned(),
                version: KDF_VERSION,
                memory_kib: key.kdf.memory_kib,
                iterations: key.kdf.iterations,
                parallelism: key.kdf.parallelism,
                salt: hex::encode(key.salt),
            },
            cipher: CipherJson {
                algorithm: CIPHER_ALGORITHM.to_owned(),
                nonce: hex::encode(key.nonce),
                ciphertext: hex::encode(key.sealed),
            },
        }
    }
}

impl EncryptedKeyFileJson {
    fn into_key(self) -> Result<EncryptedKey, String> {
        if self.kdf.algorithm != KDF_ALGORITHM || self.kdf.version != KDF_VERSION {
            return Err(format!(
                "kdf {:?} version {} (expected {KDF_ALGORITHM:?} version {KDF_VERSION})",
                self.kdf.algorithm, self.kdf.version
            ));
        }
        if self.cipher.algorithm != CIPHER_ALGORITHM {
            return Err(format!(
                "cipher {:?} (expected {CIPHER_ALGORITHM:?})",
                self.cipher.algorithm
            ));
        }
        let kdf = KdfParams {
            memory_kib: self.kdf.memory_kib,
            iterations: self.kdf.iterations,
            parallelism: self.kdf.parallelism,
        };
        kdf.argon2()?;
        let hex_field = |name: &str, e: crate::HexError| format!("{name}: {e}");
        Ok(EncryptedKey {
            public_key: self.public_key,
            kdf,
            salt: crate::fixed_bytes::parse_hex(&self.kdf.salt)
                .map_err(|e| hex_field("kdf.salt", e))?,
            nonce: crate::fixed_bytes::parse_hex(&self.cipher.nonce)
                .map_err(|e| hex_field("cipher.nonce", e))?,
            sealed: crate::fixed_bytes::parse_hex(&self.cipher.ciphertext)
                .map_err(|e| hex_field("cipher.ciphertext", e))?,
        })
    }
}

/// Writes `key` to a new version-2 file at `path` with mode 0600. Fails if
/// the file exists.
pub fn write_encrypted_key_file(path: &Path, key: &EncryptedKey) -> Result<(), KeyFileError> {
    let text = serde_json::to_string_pretty(&EncryptedKeyFileJson::from(key)).map_err(|e| {
        KeyFileError::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?;
    write_new_file(path, &text)
}

/// What a key file holds: a usable key (version 1) or a sealed one
/// (version 2).
#[derive(Debug, Clone)]
pub enum KeyFileContents {
    Plain(Keypair),
    Encrypted(EncryptedKey),
}

impl KeyFileContents {
    /// The key's public key; known without a passphrase in both versions.
    pub fn public_key(&self) -> PublicKey {
        match self {
            KeyFileContents::Plain(keypair) => keypair.public(),
            KeyFileContents::Encrypted(key) => key.public_key(),
        }
    }
}

/// A key file of either version and what was wrong with its permissions.
#[derive(Debug)]
pub struct StoredKey {
    pub contents: KeyFileContents,
    pub warning: Option<InsecurePermissions>,
}

/// Reads a key file of version 1 or 2, without decrypting. A version-1
/// file is checked as by [`load_key_file`]; a version-2 file's structure,
/// algorithms and cost bounds are checked, its seal only by
/// [`EncryptedKey::open`].
pub fn read_key_file(path: &Path) -> Result<StoredKey, KeyFileError> {
    let (text, warning) = read_bounded(path)?;
    let header = parse_header(path, &text)?;
    if header.kind != KEY_FILE_TYPE
        || !(header.version == KEY_FILE_VERSION || header.version == ENCRYPTED_KEY_FILE_VERSION)
    {
        return Err(KeyFileError::UnsupportedVersion {
            path: path.to_owned(),
            kind: header.kind,
            version: header.version,
        });
    }
    let contents = if header.version == ENCRYPTED_KEY_FILE_VERSION {
        let malformed = |message: String| KeyFileError::Malformed {
            path: path.to_owned(),
            message,
        };
        let json: EncryptedKeyFileJson =
            serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        KeyFileContents::Encrypted(json.into_key().map_err(malformed)?)
    } else {
        KeyFileContents::Plain(parse_key_file(path, &text)?)
    };
    if let Some(warning) = &warning {
        tracing::warn!("{warning}");
    }
    Ok(StoredKey { contents, warning })
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

    /// Cheap argon2id costs, so the tests stay quick.
    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn write_encrypted(dir: &Path, name: &str, seed: u8, passphrase: &str) -> PathBuf {
        let path = dir.join(name);
        let key = EncryptedKey::seal(
            &Keypair::from_seed(&[seed; 32]),
            passphrase.as_bytes(),
            CHEAP,
        )
        .unwrap();
        write_encrypted_key_file(&path, &key).unwrap();
        path
    }

    fn encrypted(contents: KeyFileContents) -> EncryptedKey {
        match contents {
            KeyFileContents::Encrypted(key) => key,
            KeyFileContents::Plain(_) => panic!("expected an encrypted key"),
        }
    }

    #[test]
    fn encrypted_file_round_trips_with_mode_0600_and_hides_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::from_seed(&[6; 32]);
        let path = write_encrypted(dir.path(), "key.json", 6, "correct horse");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode([6u8; 32])), "{text}");
        assert!(text.contains(&kp.public().to_string()), "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], KEY_FILE_TYPE);
        assert_eq!(json["version"], 2);
        assert_eq!(json["kdf"]["algorithm"], "argon2id");
        assert_eq!(json["kdf"]["version"], 19);
        assert_eq!(json["kdf"]["salt"].as_str().unwrap().len(), 32);
        assert_eq!(json["cipher"]["algorithm"], "xchacha20-poly1305");
        assert_eq!(json["cipher"]["nonce"].as_str().unwrap().len(), 48);
        assert_eq!(json["cipher"]["ciphertext"].as_str().unwrap().len(), 96);

        let stored = read_key_file(&path).unwrap();
        assert_eq!(stored.warning, None);
        assert_eq!(stored.contents.public_key(), kp.public());
        let key = encrypted(stored.contents);
        assert_eq!(key.kdf(), CHEAP);
        let opened = key.open(b"correct horse").unwrap();
        assert_eq!(opened.public(), kp.public());
        assert_eq!(*opened.seed(), [6; 32]);
        let err = write_encrypted_key_file(&path, &key).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists { .. }), "{err}");
    }

    #[test]
    fn default_costs_seal_and_open() {
        let kp = Keypair::from_seed(&[7; 32]);
        let key = EncryptedKey::seal(&kp, b"pass", KdfParams::DEFAULT).unwrap();
        assert_eq!(key.kdf(), KdfParams::DEFAULT);
        assert_eq!(key.open(b"pass").unwrap().public(), kp.public());
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let key = EncryptedKey::seal(&Keypair::from_seed(&[8; 32]), b"right", CHEAP).unwrap();
        for wrong in [&b"wrong"[..], b"", b"right ", b"Right"] {
            let err = key.open(wrong).unwrap_err();
            assert!(matches!(err, SealError::WrongPassphrase), "{err}");
        }
        assert!(key.open(b"right").is_ok());
    }

    #[test]
    fn every_seal_has_its_own_salt_and_nonce() {
        let kp = Keypair::from_seed(&[9; 32]);
        let a = EncryptedKey::seal(&kp, b"same", CHEAP).unwrap();
        let b = EncryptedKey::seal(&kp, b"same", CHEAP).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.sealed, b.sealed);
    }

    /// `good` with the field `field` of the object at `parent` (a JSON
    /// pointer) set to `value`, or removed.
    fn edit(
        good: &serde_json::Value,
        parent: &str,
        field: &str,
        value: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut json = good.clone();
        let object = json.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match value {
            Some(value) => object.insert(field.to_owned(), value),
            None => object.remove(field),
        };
        json
    }

    #[test]
    fn altering_the_clear_fields_fails_like_a_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_encrypted(dir.path(), "key.json", 10, "pw");
        let good: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let other = Keypair::from_seed(&[11; 32]).public().to_string();
        let edits = [
            ("public key", "", "public_key", other.into()),
            ("memory", "/kdf", "memory_kib", 128.into()),
            ("iterations", "/kdf", "iterations", 2.into()),
            ("salt", "/kdf", "salt", "00".repeat(16).into()),
            ("nonce", "/cipher", "nonce", "00".repeat(24).into()),
        ];
        for (name, parent, field, value) in edits {
            let json = edit(&good, parent, field, Some(value));
            let edited = dir.path().join(name.replace(' ', "_"));
            write_new_file(&edited, &json.to_string()).unwrap();
            let key = encrypted(read_key_file(&edited).unwrap().contents);
            let err = key.open(b"pw").unwrap_err();
            assert!(matches!(err, SealError::WrongPassphrase), "{name}: {err}");
        }
    }

    #[test]
    fn malformed_encrypted_files_are_refused_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_encrypted(dir.path(), "key.json", 12, "pw");
        let good: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let edits = [
            (
                "huge memory",
                "/kdf",
                "memory_kib",
                Some((KdfParams::MAX_MEMORY_KIB + 1).into()),
            ),
            ("many passes", "/kdf", "iterations", Some(1_000_000.into())),
            ("no memory", "/kdf", "memory_kib", Some(1.into())),
            ("scrypt", "/kdf", "algorithm", Some("scrypt".into())),
            ("argon2 1.0", "/kdf", "version", Some(16.into())),
            ("aes", "/cipher", "algorithm", Some("aes-256-gcm".into())),
            ("short salt", "/kdf", "salt", Some("00".into())),
            (
                "short ciphertext",
                "/cipher",
                "ciphertext",
                Some("00".repeat(32).into()),
            ),
            ("extra field", "/cipher", "mac", Some("00".into())),
            ("no cipher", "", "cipher", None),
        ];
        for (name, parent, field, value) in edits {
            let json = edit(&good, parent, field, value);
            let edited = dir.path().join(name.replace(' ', "_"));
            write_new_file(&edited, &json.to_string()).unwrap();
            let err = read_key_file(&edited).unwrap_err();
            assert!(
                matches!(err, KeyFileError::Malformed { .. }),
                "{name}: {err}"
            );
            assert!(
                err.to_string().contains(&edited.display().to_string()),
                "{err}"
            );
        }
        let mut json = good.clone();
        json["version"] = 3.into();
        let v3 = dir.path().join("v3");
        write_new_file(&v3, &json.to_string()).unwrap();
        let err = read_key_file(&v3).unwrap_err();
        assert!(
            matches!(err, KeyFileError::UnsupportedVersion { version: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn load_key_file_names_an_encrypted_file_and_read_key_file_reads_both() {
        let dir = tempfile::tempdir().unwrap();
        let encrypted_path = write_encrypted(dir.path(), "sealed.json", 13, "pw");
        let err = load_key_file(&encrypted_path).unwrap_err();
        assert!(matches!(err, KeyFileError::Encrypted { .. }), "{err}");
        assert!(err.to_string().contains("encrypted"), "{err}");
        let plain_path = dir.path().join("plain.json");
        let kp = Keypair::from_seed(&[14; 32]);
        write_key_file(&plain_path, &kp).unwrap();
        match read_key_file(&plain_path).unwrap().contents {
            KeyFileContents::Plain(loaded) => assert_eq!(loaded.public(), kp.public()),
            KeyFileContents::Encrypted(_) => panic!("a version-1 file is not encrypted"),
        }
    }
}
