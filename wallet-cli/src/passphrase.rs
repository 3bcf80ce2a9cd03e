//! Where passphrases come from: the `PHALANX_PASSPHRASE` environment
//! variable when it is set (scripts, tests), otherwise the terminal, with
//! echo off (`rpassword` reads `/dev/tty`, so a passphrase is never taken
//! from a pipe by accident). A new passphrase is asked twice and must not
//! be empty. Passphrases are held in zeroizing strings.

use crate::error::WalletError;
use zeroize::Zeroizing;

/// The environment variable that supplies the passphrase.
pub const PASSPHRASE_ENV: &str = "PHALANX_PASSPHRASE";

/// The passphrase that decrypts the key called `name`.
pub fn to_unlock(name: &str) -> Result<Zeroizing<String>, WalletError> {
    if let Some(passphrase) = from_env()? {
        return Ok(passphrase);
    }
    prompt(&format!("passphrase for key {name}: "), name)
}

/// A passphrase for a new encrypted key called `name`.
pub fn for_new_key(name: &str) -> Result<Zeroizing<String>, WalletError> {
    let passphrase = match from_env()? {
        Some(passphrase) => passphrase,
        None => {
            let first = prompt(&format!("new passphrase for key {name}: "), name)?;
            let second = prompt("the same passphrase again: ", name)?;
            if first != second {
                return Err(WalletError::Passphrase(
                    "the two passphrases differ; nothing was written".into(),
                ));
            }
            first
        }
    };
    if passphrase.is_empty() {
        return Err(WalletError::Passphrase(
            "an empty passphrase protects nothing; choose one, or leave out --encrypt".into(),
        ));
    }
    Ok(passphrase)
}

fn from_env() -> Result<Option<Zeroizing<String>>, WalletError> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(value) => Ok(Some(Zeroizing::new(value))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(WalletError::Passphrase(format!(
            "{PASSPHRASE_ENV} is not valid UTF-8"
        ))),
    }
}

fn prompt(text: &str, name: &str) -> Result<Zeroizing<String>, WalletError> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|e| {
            WalletError::Passphrase(format!(
                "key {name} needs a passphrase and none could be read from the terminal ({e}); set {PASSPHRASE_ENV}"
            ))
        })
}
