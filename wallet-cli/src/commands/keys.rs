//! `keygen`, `list`, `address`, `import` and `completions`: local commands
//! that never touch the network.

use super::Context;
use crate::cli::{Cli, ImportArgs, KeygenArgs};
use crate::error::WalletError;
use crate::output::fields;
use crate::passphrase;
use phalanx_chain::Address;
use phalanx_crypto::Keypair;
use phalanx_crypto::keyfile::{self, EncryptedKey, KdfParams, KeyFileContents, SealError};
use serde_json::json;
use std::path::Path;

pub fn keygen(ctx: &Context, args: &KeygenArgs) -> Result<(), WalletError> {
    let wallet = ctx.wallet()?;
    let path = wallet.key_path(&args.name)?;
    if path.exists() {
        return Err(WalletError::KeyExists {
            name: args.name.clone(),
            path,
        });
    }
    let keypair = Keypair::generate().map_err(|e| WalletError::Config(e.to_string()))?;
    let path = if args.encrypt {
        let sealed = seal(&keypair, &args.name)?;
        wallet.add_encrypted(&args.name, &sealed)?
    } else {
        wallet.add_plain(&args.name, &keypair)?
    };
    print_key(
        ctx,
        &args.name,
        keypair.public().into(),
        args.encrypt,
        &path,
    )
}

/// Seals `keypair` under a new passphrase for the key called `name`.
fn seal(keypair: &Keypair, name: &str) -> Result<EncryptedKey, WalletError> {
    let passphrase = passphrase::for_new_key(name)?;
    EncryptedKey::seal(keypair, passphrase.as_bytes(), KdfParams::DEFAULT).map_err(|e| match e {
        SealError::Randomness(_) | SealError::Kdf(_) | SealError::BadParams(_) => {
            WalletError::Config(format!("cannot encrypt key {name}: {e}"))
        }
        other => WalletError::Passphrase(other.to_string()),
    })
}

fn print_key(
    ctx: &Context,
    name: &str,
    address: Address,
    encrypted: bool,
    path: &Path,
) -> Result<(), WalletError> {
    ctx.out.emit(
        &json!({
            "name": name,
            "address": address,
            "encrypted": encrypted,
            "path": path,
        }),
        || {
            fields(&[
                ("name", name.to_owned()),
                ("address", address.to_string()),
                (
                    "file",
                    format!(
                        "{}{}",
                        path.display(),
                        if encrypted { " (encrypted)" } else { "" }
                    ),
                ),
            ])
        },
    )
}

pub fn list(ctx: &Context) -> Result<(), WalletError> {
    let wallet = ctx.wallet()?;
    let keys = wallet.list()?;
    let entries: Vec<_> = keys
        .iter()
        .map(|k| match &k.key {
            Ok((address, encrypted)) => json!({
                "name": k.name, "address": address, "encrypted": encrypted, "path": k.path,
            }),
            Err(error) => json!({
                "name": k.name, "address": null, "encrypted": null, "path": k.path, "error": error,
            }),
        })
        .collect();
    ctx.out.emit(
        &json!({ "wallet_dir": wallet.dir(), "keys": entries }),
        || {
            if keys.is_empty() {
                return format!(
                    "no keys in {} (create one with `phalanx-wallet keygen --name NAME`)\n",
                    wallet.dir().display()
                );
            }
            let width = keys.iter().map(|k| k.name.len()).max().unwrap_or(0).max(4);
            let mut text = format!("{:<width$}  {:<64}  ENCRYPTED\n", "NAME", "ADDRESS");
            for k in &keys {
                let line = match &k.key {
                    Ok((address, encrypted)) => format!(
                        "{:<width$}  {address}  {}\n",
                        k.name,
                        if *encrypted { "yes" } else { "no" }
                    ),
                    Err(error) => format!("{:<width$}  unreadable: {error}\n", k.name),
                };
                text.push_str(&line);
            }
            text
        },
    )
}

pub fn address(ctx: &Context, name: &str) -> Result<(), WalletError> {
    let (stored, _) = ctx.wallet()?.read(name)?;
    let address = Address::from(stored.contents.public_key());
    ctx.out
        .emit(&json!({ "name": name, "address": address }), || {
            address.to_string()
        })
}

pub fn import(ctx: &Context, args: &ImportArgs) -> Result<(), WalletError> {
    let wallet = ctx.wallet()?;
    let target = wallet.key_path(&args.name)?;
    if target.exists() {
        return Err(WalletError::KeyExists {
            name: args.name.clone(),
            path: target,
        });
    }
    let stored = keyfile::read_key_file(&args.file)?;
    if let Some(warning) = &stored.warning {
        eprintln!("warning: {warning}");
    }
    let address = Address::from(stored.contents.public_key());
    if let Some(existing) = wallet
        .list()?
        .into_iter()
        .find(|k| matches!(k.key, Ok((a, _)) if a == address))
    {
        eprintln!(
            "note: key {} already holds this address ({address})",
            existing.name
        );
    }
    let (path, encrypted) = match stored.contents {
        KeyFileContents::Encrypted(sealed) => (wallet.add_encrypted(&args.name, &sealed)?, true),
        KeyFileContents::Plain(keypair) if args.encrypt => {
            let sealed = seal(&keypair, &args.name)?;
            (wallet.add_encrypted(&args.name, &sealed)?, true)
        }
        KeyFileContents::Plain(keypair) => (wallet.add_plain(&args.name, &keypair)?, false),
    };
    print_key(ctx, &args.name, address, encrypted, &path)
}

pub fn completions(shell: clap_complete::Shell) -> Result<(), WalletError> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "phalanx-wallet", &mut script);
    crate::output::write_stdout(&String::from_utf8_lossy(&script))
}
