//! `phalanx-wallet`: the Phalanx command-line wallet.
//!
//! The wallet holds keys on disk and talks to one node over its HTTP API
//! (docs/API.md); it never links the node. Its pieces:
//!
//! - [`cli`]: the commands and global options (`--rpc`/`PHALANX_RPC`,
//!   `--wallet-dir`/`PHALANX_WALLET_DIR`, `--json`).
//! - [`wallet`]: the wallet directory, named key files in the formats of
//!   `phalanx_crypto::keyfile` (version 1 plain, version 2 sealed under a
//!   passphrase with argon2id and XChaCha20-Poly1305), and [`passphrase`]
//!   for where passphrases come from.
//! - [`pending`]: the memory of this wallet's transfers that are not final
//!   yet, so that back-to-back transfers get distinct nonces.
//! - [`rpc`]: the node's API with deadlines and errors sorted by what the
//!   user can do; [`sse`] parses the `GET /events` stream.
//! - [`commands`]: one function per command; [`output`] prints text for
//!   people or one JSON document for programs.
//! - [`error`]: every failure with a stable code and an exit status
//!   (1 local, 2 usage, 3 no node, 4 refused by the node, 5 not final in
//!   time).
//!
//! Everything runs on a single-threaded tokio runtime: the wallet does one
//! thing at a time, and the spinner ticks on its own thread.
//!
//! The user-facing description (commands, output, the key file format) is
//! docs/WALLET.md.

mod cli;
mod commands;
mod error;
mod output;
mod passphrase;
mod pending;
mod rpc;
mod sse;
mod wallet;

use clap::Parser;
use clap::error::ErrorKind;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.json;
    // reqwest is built with `rustls-no-provider`: choose ring, which the
    // workspace already builds, before any client exists. An Err means a
    // provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error::WalletError::Config(format!("cannot start the runtime: {e}")))
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output left (`| head`): nothing to tell it.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                let _ = output::write_stdout(&format!("{}\n", e.to_json()));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// A command line clap refused (exit status 2), or `--help`/`--version`
/// (exit status 0). With `--json` anywhere on the line, a usage error is a
/// JSON document like any other error.
fn usage_error(e: &clap::Error) -> ExitCode {
    let json = std::env::args_os().any(|arg| arg == "--json");
    if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let text = e.to_string();
        let document = serde_json::json!({
            "error": {
                "code": "usage",
                "message": text.trim_start_matches("error: ").trim_end(),
                "source": "wallet",
            }
        });
        let _ = output::write_stdout(&format!("{document}\n"));
        return ExitCode::from(2);
    }
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}
