//! The wallet directory: named key files and the memory of pending
//! transfers.
//!
//! ```text
//! <wallet dir>/            mode 0700
//!   keys/<name>.json       one key file each, mode 0600: version 1
//!                          (plain) or 2 (encrypted), as phalanx_crypto::keyfile
//!                          writes them
//!   pending.json           transfers sent and not yet final (see pending.rs)
//! ```
//!
//! A key's name is its file name, so names are restricted to characters
//! that are safe in a path (letters, digits, `_`, `.`, `-`, not starting
//! with `.` or `-`) and may not be 64 hex characters, so that an argument
//! that reads as an address is always an address.

use crate::error::WalletError;
use crate::passphrase;
use phalanx_chain::Address;
use phalanx_crypto::Keypair;
use phalanx_crypto::keyfile::{self, EncryptedKey, KeyFileContents, KeyFileError, StoredKey};
use std::path::{Path, PathBuf};

/// The longest key name.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug)]
pub struct Wallet {
    dir: PathBuf,
}

/// One entry of `list`.
#[derive(Debug)]
pub struct ListedKey {
    pub name: String,
    pub path: PathBuf,
    /// The key's address and whether it is encrypted, or why its file
    /// could not be read.
    pub key: Result<(Address, bool), String>,
}

impl Wallet {
    /// The wallet at `dir`, or at `~/.phalanx/wallet`.
    pub fn new(dir: Option<PathBuf>) -> Result<Wallet, WalletError> {
        let dir = match dir {
            Some(dir) => dir,
            None => std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".phalanx").join("wallet"))
                .ok_or_else(|| {
                    WalletError::Config(
                        "HOME is not set: give the wallet directory with --wallet-dir or PHALANX_WALLET_DIR".into(),
                    )
                })?,
        };
        Ok(Wallet { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// Creates the wallet and keys directories (mode 0700) if missing.
    pub fn ensure_dirs(&self) -> Result<(), WalletError> {
        let keys = self.keys_dir();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&keys).map_err(|source| WalletError::Io {
            path: keys.clone(),
            source,
        })
    }

    /// The file of the key called `name` (which need not exist).
    pub fn key_path(&self, name: &str) -> Result<PathBuf, WalletError> {
        check_name(name)?;
        Ok(self.keys_dir().join(format!("{name}.json")))
    }

    /// Stores a plain key under a new name.
    pub fn add_plain(&self, name: &str, keypair: &Keypair) -> Result<PathBuf, WalletError> {
        let path = self.key_path(name)?;
        self.ensure_dirs()?;
        keyfile::write_key_file(&path, keypair).map_err(|e| exists_or(name, e))?;
        Ok(path)
    }

    /// Stores an encrypted key under a new name.
    pub fn add_encrypted(&self, name: &str, key: &EncryptedKey) -> Result<PathBuf, WalletError> {
        let path = self.key_path(name)?;
        self.ensure_dirs()?;
        keyfile::write_encrypted_key_file(&path, key).map_err(|e| exists_or(name, e))?;
        Ok(path)
    }

    /// Reads the key called `name` without decrypting it.
    pub fn read(&self, name: &str) -> Result<(StoredKey, PathBuf), WalletError> {
        let path = self.key_path(name)?;
        match keyfile::read_key_file(&path) {
            Ok(stored) => {
                if let Some(warning) = &stored.warning {
                    eprintln!("warning: {warning}");
                }
                Ok((stored, path))
            }
            Err(KeyFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(WalletError::UnknownKey {
                    name: name.to_owned(),
                    dir: self.keys_dir(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The key called `name`, ready to sign: decrypted with the passphrase
    /// from PHALANX_PASSPHRASE or the terminal if it is encrypted.
    pub fn unlock(&self, name: &str) -> Result<Keypair, WalletError> {
        let (stored, path) = self.read(name)?;
        match stored.contents {
            KeyFileContents::Plain(keypair) => Ok(keypair),
            KeyFileContents::Encrypted(key) => {
                let passphrase = passphrase::to_unlock(name)?;
                key.open(passphrase.as_bytes()).map_err(|e| match e {
                    keyfile::SealError::WrongPassphrase => WalletError::WrongPassphrase {
                        name: name.to_owned(),
                        path,
                    },
                    other => WalletError::Passphrase(format!("{}: {other}", path.display())),
                })
            }
        }
    }

    /// Every `*.json` file in the keys directory, by name.
    pub fn list(&self) -> Result<Vec<ListedKey>, WalletError> {
        let dir = self.keys_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(WalletError::Io { path: dir, source }),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| WalletError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| check_name(n).is_ok())
            else {
                continue;
            };
            let key = keyfile::read_key_file(&path)
                .map(|stored| {
                    let encrypted = matches!(stored.contents, KeyFileContents::Encrypted(_));
                    (Address::from(stored.contents.public_key()), encrypted)
                })
                .map_err(|e| e.to_string());
            keys.push(ListedKey {
                name: name.to_owned(),
                path: path.clone(),
                key,
            });
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// An account given as an address or as a key's name: the address, and
    /// the name if it was one. Decided without the network.
    pub fn resolve_account(&self, input: &str) -> Result<(Address, Option<String>), WalletError> {
        let parse_error = match input.parse::<Address>() {
            Ok(address) => return Ok((address, None)),
            Err(e) => e,
        };
        if check_name(input).is_ok() {
            match self.read(input) {
                Ok((stored, _)) => {
                    return Ok((stored.contents.public_key().into(), Some(input.to_owned())));
                }
                Err(WalletError::UnknownKey { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(WalletError::BadAddress(format!(
            "{parse_error}; nor is it the name of a key in {}",
            self.keys_dir().display()
        )))
    }
}

fn exists_or(name: &str, e: KeyFileError) -> WalletError {
    match e {
        KeyFileError::AlreadyExists { path } => WalletError::KeyExists {
            name: name.to_owned(),
            path,
        },
        other => other.into(),
    }
}

/// Checks that `name` can be a key's name.
pub fn check_name(name: &str) -> Result<(), WalletError> {
    let bad = |reason| {
        Err(WalletError::BadName {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return bad("it is too long");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return bad("it has a character that is not allowed");
    }
    if name.parse::<Address>().is_ok() {
        return bad("it reads as an address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_safe_and_never_addresses() {
        for good in ["alice", "Bob-2", "faucet.old", "a", "x_y", &"n".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "..",
            "a b",
            "é",
            &"n".repeat(65),
            &"ab".repeat(32),
        ] {
            assert!(
                matches!(check_name(bad), Err(WalletError::BadName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn accounts_resolve_by_address_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::new(Some(dir.path().to_owned())).unwrap();
        let key = Keypair::from_seed(&[3; 32]);
        wallet.add_plain("carol", &key).unwrap();
        let address = Address::from(key.public());
        let by_name = wallet.resolve_account("carol").unwrap();
        assert_eq!(by_name, (address, Some("carol".to_owned())));
        let by_address = wallet.resolve_account(&address.to_string()).unwrap();
        assert_eq!(by_address, (address, None));
        for bad in ["dave", "0xabc", &address.to_string().to_uppercase()] {
            let err = wallet.resolve_account(bad).err();
            assert!(
                matches!(&err, Some(WalletError::BadAddress(m)) if m.contains("64 lowercase hex")),
                "{bad}: {err:?}"
            );
        }
        let again = wallet.add_plain("carol", &Keypair::from_seed(&[4; 32]));
        assert!(matches!(again, Err(WalletError::KeyExists { .. })));
    }
}
