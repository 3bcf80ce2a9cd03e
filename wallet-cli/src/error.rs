//! Everything that can go wrong, grouped by what the user should do about
//! it, each with a stable `code` (for `--json`) and an exit status.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | a local problem: bad input, a key file, a passphrase, the wallet directory |
//! | 2 | the command line itself (clap's usage errors) |
//! | 3 | no node answered, or it answered something that is not the API |
//! | 4 | the node refused the request (its error code and message are shown) |
//! | 5 | a transfer was accepted but not final within `--timeout` |

use phalanx_crypto::keyfile::KeyFileError;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Exit status of a local problem.
pub const EXIT_LOCAL: u8 = 1;
/// Exit status when no node answered.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit status when the node refused.
pub const EXIT_REFUSED: u8 = 4;
/// Exit status when a transfer was not final in time.
pub const EXIT_TIMEOUT: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("{0}")]
    BadAddress(String),
    #[error("invalid hash {input:?}: a transaction hash is 64 lowercase hex characters ({reason})")]
    BadHash { input: String, reason: String },
    #[error(
        "invalid height {input:?}: a height is a decimal number from 0 to {}, or `latest`",
        u64::MAX
    )]
    BadHeight { input: String },
    #[error(
        "invalid key name {name:?}: {reason} (a name is 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit)"
    )]
    BadName { name: String, reason: &'static str },
    #[error("no key named {name:?} in {dir} (`phalanx-wallet list` shows the keys)")]
    UnknownKey { name: String, dir: PathBuf },
    #[error("a key named {name:?} already exists ({path}); choose another name")]
    KeyExists { name: String, path: PathBuf },
    #[error(transparent)]
    KeyFile(KeyFileError),
    #[error("wrong passphrase for key {name:?} ({path}): it does not decrypt")]
    WrongPassphrase { name: String, path: PathBuf },
    #[error("{0}")]
    Passphrase(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(
        "no node answered at {url} ({detail}).\nStart a local testnet with `phalanx-testnet up` (or four nodes by hand, as in the README's \"Four nodes by hand\" section), or point the wallet at a running node with --rpc URL or PHALANX_RPC."
    )]
    Unreachable { url: String, detail: String },
    #[error("the node at {url} answered {what} with something that is not its API: {detail}")]
    BadResponse {
        url: String,
        what: String,
        detail: String,
    },
    #[error("the node refused: {message} ({code})")]
    Refused { code: String, message: String },
    #[error(
        "transaction {hash} is no longer known to the node at {url}: it was dropped (its nonce was used by another transaction, or the node restarted)"
    )]
    Dropped { hash: String, url: String },
    #[error(
        "transaction {hash} was admitted and has left the pool of the node at {url}, which keeps no transaction index (node.tx_index = false): it cannot say whether the transaction is final. Look for it in the blocks, ask a node that keeps the index, or check the sender's nonce with `phalanx-wallet balance`"
    )]
    Unindexed { hash: String, url: String },
    #[error(
        "timed out after {waited_secs} s waiting for finality of {hash} (last seen: {last_status}); it may still become final: check with `phalanx-wallet tx {hash}`"
    )]
    Timeout {
        hash: String,
        waited_secs: u64,
        last_status: String,
    },
    #[error("the node at {url} closed the event stream")]
    StreamClosed { url: String },
}

impl From<KeyFileError> for WalletError {
    fn from(e: KeyFileError) -> Self {
        WalletError::KeyFile(e)
    }
}

impl WalletError {
    /// A stable, machine-readable name for the error. A refusal keeps the
    /// node's own code (`insufficient_balance`, `nonce_gap`, ...).
    pub fn code(&self) -> &str {
        match self {
            WalletError::BadAddress(_) => "bad_address",
            WalletError::BadHash { .. } => "bad_hash",
            WalletError::BadHeight { .. } => "bad_height",
            WalletError::BadName { .. } => "bad_name",
            WalletError::UnknownKey { .. } => "unknown_key",
            WalletError::KeyExists { .. } => "key_exists",
            WalletError::KeyFile(_) => "key_file",
            WalletError::WrongPassphrase { .. } => "wrong_passphrase",
            WalletError::Passphrase(_) => "passphrase",
            WalletError::Io { .. } => "io",
            WalletError::Config(_) => "config",
            WalletError::Unreachable { .. } => "node_unreachable",
            WalletError::BadResponse { .. } => "bad_response",
            WalletError::Refused { code, .. } => code,
            WalletError::Dropped { .. } => "dropped",
            WalletError::Unindexed { .. } => "tx_index_off",
            WalletError::Timeout { .. } => "timeout",
            WalletError::StreamClosed { .. } => "stream_closed",
        }
    }

    /// Whether this is a write to a reader that went away (`| head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, WalletError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            WalletError::Unreachable { .. }
            | WalletError::BadResponse { .. }
            | WalletError::StreamClosed { .. } => EXIT_UNREACHABLE,
            WalletError::Refused { .. } | WalletError::Dropped { .. } => EXIT_REFUSED,
            // Like a timeout: it may be final, the wallet cannot tell.
            WalletError::Timeout { .. } | WalletError::Unindexed { .. } => EXIT_TIMEOUT,
            _ => EXIT_LOCAL,
        }
    }

    /// Whether the error came from the node (its code is the node's).
    fn source_name(&self) -> &'static str {
        match self {
            WalletError::Refused { .. } => "node",
            _ => "wallet",
        }
    }

    /// The `--json` form: `{"error": {"code", "message", "source", ...}}`,
    /// with the hash of a transfer that timed out or was dropped, and the
    /// URL of a node that did not answer.
    pub fn to_json(&self) -> Value {
        let mut error = json!({
            "code": self.code(),
            "message": self.to_string(),
            "source": self.source_name(),
        });
        let extra = match self {
            WalletError::Timeout {
                hash, last_status, ..
            } => Some(json!({"hash": hash, "last_status": last_status})),
            WalletError::Dropped { hash, url } | WalletError::Unindexed { hash, url } => {
                Some(json!({"hash": hash, "rpc": url}))
            }
            WalletError::Unreachable { url, .. } | WalletError::StreamClosed { url } => {
                Some(json!({"rpc": url}))
            }
            _ => None,
        };
        if let (Some(Value::Object(extra)), Some(error)) = (extra, error.as_object_mut()) {
            error.extend(extra);
        }
        json!({ "error": error })
    }
}
