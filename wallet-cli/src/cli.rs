//! The command line: global options and one subcommand per task.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Where the first node of `phalanx-testnet init`'s default local network
/// serves its HTTP API.
pub const DEFAULT_RPC: &str = "http://127.0.0.1:26651";

/// How long `transfer` waits for finality by default.
pub const DEFAULT_WAIT_SECS: u64 = 60;

/// The Phalanx wallet: keys on disk, signed transfers, and a look at the
/// chain through a node's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "phalanx-wallet", version, about, long_about = None)]
pub struct Cli {
    /// The node's HTTP API.
    #[arg(long, global = true, env = "PHALANX_RPC", default_value = DEFAULT_RPC)]
    pub rpc: String,
    /// Where keys and remembered pending transfers live [default:
    /// ~/.phalanx/wallet].
    #[arg(long, global = true, env = "PHALANX_WALLET_DIR")]
    pub wallet_dir: Option<PathBuf>,
    /// Print one JSON document (errors too; `watch` prints one per line).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new key in the wallet.
    Keygen(KeygenArgs),
    /// List the wallet's keys.
    List,
    /// Print the address of a key.
    Address {
        /// The key's name.
        name: String,
    },
    /// Copy a key file (version 1 or 2) into the wallet under a name.
    Import(ImportArgs),
    /// Show an account's balance and nonces.
    Balance {
        /// An address (64 lowercase hex characters) or a key's name.
        account: String,
    },
    /// Sign and submit a transfer, then wait until it is final.
    Transfer(TransferArgs),
    /// Show where a transaction is (pending, committed, finalized) and its
    /// confirmations.
    Tx {
        /// The transaction's hash (64 lowercase hex characters).
        hash: String,
    },
    /// Show a committed block.
    Block {
        /// A height, or `latest`.
        #[arg(default_value = "latest", allow_hyphen_values = true)]
        height: String,
    },
    /// Show the node's status.
    Status,
    /// Follow blocks as the node commits them, and (proof of work)
    /// reorganizations and finality.
    Watch {
        /// Stop after this many blocks (default: follow until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name: letters, digits, `_`, `.`, `-`; at most 64.
    #[arg(long)]
    pub name: String,
    /// Protect the key with a passphrase (PHALANX_PASSPHRASE, or asked
    /// twice on the terminal).
    #[arg(long)]
    pub encrypt: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The name to give the key in the wallet.
    #[arg(long)]
    pub name: String,
    /// Encrypt an unencrypted key file as it is imported.
    #[arg(long)]
    pub encrypt: bool,
    /// The key file to import.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The sender: a key's name.
    #[arg(long)]
    pub from: String,
    /// The recipient: an address or a key's name.
    #[arg(long)]
    pub to: String,
    /// The amount, in the currency's smallest unit.
    #[arg(long)]
    pub amount: u64,
    /// The fee paid to the block's proposer.
    #[arg(long, default_value_t = 1)]
    pub fee: u64,
    /// Return once the node has accepted the transfer, without waiting
    /// for it to be final.
    #[arg(long, conflicts_with = "confirmations")]
    pub no_wait: bool,
    /// Wait until the transfer is final and also has at least N
    /// confirmations (its block and the blocks on top), for more
    /// assurance than the chain's own finality (on proof-of-work chains,
    /// the genesis `confirmations`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirmations: Option<u64>,
    /// How long to wait for finality, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_WAIT_SECS)]
    pub timeout: u64,
}
