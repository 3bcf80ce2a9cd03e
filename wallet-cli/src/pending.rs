//! The wallet's memory of its own transfers that are not final yet, so
//! that transfers sent back to back do not reuse a nonce.
//!
//! A node's `pending_nonce` already counts the transactions in *its*
//! mempool, but not those sent through another node whose gossip has not
//! arrived yet. So each accepted transfer is remembered in
//! `<wallet dir>/pending.json` (chain id, sender, nonce, hash, the node it
//! went to), and the next nonce is the larger of the node's
//! `pending_nonce` and one past the highest remembered nonce.
//!
//! Entries are forgotten when:
//! - the sender's committed nonce passes them (they, or a rival with the
//!   same nonce, are in a block);
//! - the wallet sees them final;
//! - the node they were sent to no longer knows them (it dropped them:
//!   keeping them would leave a gap that no block ever fills);
//! - the book is over its bounds ([`MAX_PER_ACCOUNT`] per sender, the
//!   node's nonce gap; [`MAX_TOTAL`] in all): the oldest go first.
//!
//! The file is a hint, not a ledger: a damaged one is ignored with a
//! warning and rewritten, and nonces then come from the node alone. It is
//! replaced atomically (write then rename). Wallets sharing a directory
//! take turns through [`BookLock`] (an exclusive lock on
//! `<wallet dir>/pending.lock`, held from reading the book to recording
//! the new transfer), so transfers started at the same moment from the
//! same sender still get their own nonces.

use phalanx_chain::{Address, Hash, Nonce};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::WalletError;

/// At most this many remembered transfers per sender and chain: the
/// node's default `max_nonce_gap`, beyond which it refuses nonces anyway.
pub const MAX_PER_ACCOUNT: usize = 64;
/// At most this many remembered transfers in all.
pub const MAX_TOTAL: usize = 1024;
/// A larger `pending.json` is ignored unread.
const MAX_FILE_BYTES: u64 = 1 << 20;
const FORMAT_VERSION: u32 = 1;

/// A transfer a node accepted and the wallet has not seen final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransfer {
    pub chain_id: String,
    pub from: Address,
    pub nonce: Nonce,
    pub hash: Hash,
    /// The node it was submitted to.
    pub rpc: String,
    pub submitted_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct BookFile {
    version: u32,
    transfers: Vec<PendingTransfer>,
}

/// An exclusive lock on a wallet directory's pending book; released when
/// dropped, or when the process ends however it ends.
#[derive(Debug)]
pub struct BookLock {
    _file: std::fs::File,
}

impl BookLock {
    /// Waits for the lock on `wallet_dir`'s book.
    pub fn acquire(wallet_dir: &Path) -> Result<BookLock, WalletError> {
        let path = wallet_dir.join("pending.lock");
        let io = |source| WalletError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(BookLock { _file: file })
    }
}

#[derive(Debug)]
pub struct PendingBook {
    path: PathBuf,
    transfers: Vec<PendingTransfer>,
}

impl PendingBook {
    /// The book in `wallet_dir`; empty if there is none or it is damaged
    /// (with a warning on stderr).
    pub fn load(wallet_dir: &Path) -> PendingBook {
        let path = wallet_dir.join("pending.json");
        let transfers = match read_book(&path) {
            Ok(transfers) => transfers,
            Err(reason) => {
                eprintln!(
                    "warning: ignoring {} ({reason}); it will be rewritten",
                    path.display()
                );
                Vec::new()
            }
        };
        PendingBook { path, transfers }
    }

    /// Writes the book back (mode 0600), replacing the file atomically.
    pub fn save(&self) -> Result<(), WalletError> {
        let io = |path: &Path, source| WalletError::Io {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_string_pretty(&BookFile {
            version: FORMAT_VERSION,
            transfers: self.transfers.clone(),
        })
        .map_err(|e| io(&self.path, std::io::Error::other(e)))?;
        let tmp = self
            .path
            .with_file_name(format!("pending.json.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io(&tmp, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))
    }

    /// The remembered transfers from `from` on `chain_id`.
    pub fn of<'a>(
        &'a self,
        chain_id: &'a str,
        from: &'a Address,
    ) -> impl Iterator<Item = &'a PendingTransfer> + 'a {
        self.transfers
            .iter()
            .filter(move |t| t.chain_id == chain_id && t.from == *from)
    }

    /// Forgets the transfers from `from` whose nonce is below the
    /// account's committed nonce.
    pub fn prune_committed(&mut self, chain_id: &str, from: &Address, committed: Nonce) {
        self.transfers
            .retain(|t| !(t.chain_id == chain_id && t.from == *from && t.nonce < committed));
    }

    pub fn forget(&mut self, hash: &Hash) {
        self.transfers.retain(|t| t.hash != *hash);
    }

    /// The nonce for the next transfer from `from`: the node's
    /// `pending_nonce`, or one past the highest remembered nonce if that
    /// is larger. `None` if the nonces are exhausted.
    pub fn next_nonce(
        &self,
        chain_id: &str,
        from: &Address,
        pending_nonce: Nonce,
    ) -> Option<Nonce> {
        match self.of(chain_id, from).map(|t| t.nonce).max() {
            Some(highest) if highest >= pending_nonce => highest.next(),
            _ => Some(pending_nonce),
        }
    }

    /// Remembers a transfer, then drops the oldest entries over the
    /// bounds.
    pub fn record(&mut self, transfer: PendingTransfer) {
        let (chain_id, from) = (transfer.chain_id.clone(), transfer.from);
        self.transfers.push(transfer);
        self.transfers.sort_by_key(|t| t.submitted_ms);
        let mine = self.of(&chain_id, &from).count();
        if mine > MAX_PER_ACCOUNT {
            let mut excess = mine - MAX_PER_ACCOUNT;
            self.transfers.retain(|t| {
                let drop = excess > 0 && t.chain_id == chain_id && t.from == from;
                excess -= usize::from(drop);
                !drop
            });
        }
        let total = self.transfers.len();
        if total > MAX_TOTAL {
            self.transfers.drain(..total - MAX_TOTAL);
        }
    }
}

fn read_book(path: &Path) -> Result<Vec<PendingTransfer>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let book: BookFile = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if book.version != FORMAT_VERSION {
        return Err(format!("unknown version {}", book.version));
    }
    Ok(book.transfers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(from: u8, nonce: u64, submitted_ms: u64) -> PendingTransfer {
        PendingTransfer {
            chain_id: "c".into(),
            from: Address([from; 32]),
            nonce: Nonce(nonce),
            hash: Hash::digest(&[from, nonce as u8, submitted_ms as u8]),
            rpc: "http://127.0.0.1:1".into(),
            submitted_ms,
        }
    }

    fn book() -> PendingBook {
        PendingBook {
            path: PathBuf::from("/nonexistent/pending.json"),
            transfers: Vec::new(),
        }
    }

    #[test]
    fn next_nonce_skips_remembered_transfers_the_node_does_not_count() {
        let mut book = book();
        let alice = Address([1; 32]);
        assert_eq!(book.next_nonce("c", &alice, Nonce(3)), Some(Nonce(3)));
        book.record(transfer(1, 3, 1));
        book.record(transfer(1, 4, 2));
        // The node already counts them: its pending_nonce wins.
        assert_eq!(book.next_nonce("c", &alice, Nonce(5)), Some(Nonce(5)));
        // The node has not heard of them (another node took them).
        assert_eq!(book.next_nonce("c", &alice, Nonce(3)), Some(Nonce(5)));
        // Other senders and other chains are not affected.
        assert_eq!(
            book.next_nonce("c", &Address([2; 32]), Nonce(0)),
            Some(Nonce(0))
        );
        assert_eq!(book.next_nonce("d", &alice, Nonce(0)), Some(Nonce(0)));
        book.record(transfer(1, u64::MAX, 3));
        assert_eq!(book.next_nonce("c", &alice, Nonce(0)), None);
    }

    #[test]
    fn committed_and_final_transfers_are_forgotten() {
        let mut book = book();
        let alice = Address([1; 32]);
        for nonce in 0..4 {
            book.record(transfer(1, nonce, nonce));
        }
        book.record(transfer(2, 0, 9));
        book.prune_committed("c", &alice, Nonce(2));
        let left: Vec<u64> = book.of("c", &alice).map(|t| t.nonce.0).collect();
        assert_eq!(left, [2, 3]);
        assert_eq!(book.of("c", &Address([2; 32])).count(), 1);
        let hash = transfer(1, 3, 3).hash;
        book.forget(&hash);
        let left: Vec<u64> = book.of("c", &alice).map(|t| t.nonce.0).collect();
        assert_eq!(left, [2]);
    }

    #[test]
    fn the_book_is_bounded_dropping_the_oldest() {
        let mut book = book();
        for nonce in 0..(MAX_PER_ACCOUNT as u64 + 10) {
            book.record(transfer(1, nonce, nonce));
        }
        let nonces: Vec<u64> = book.of("c", &Address([1; 32])).map(|t| t.nonce.0).collect();
        assert_eq!(nonces.len(), MAX_PER_ACCOUNT);
        assert_eq!(nonces.first(), Some(&10));
        for sender in 0..=(MAX_TOTAL / MAX_PER_ACCOUNT) as u8 {
            for nonce in 0..MAX_PER_ACCOUNT as u64 {
                book.record(transfer(sender + 10, nonce, 1_000 + nonce));
            }
        }
        assert_eq!(book.transfers.len(), MAX_TOTAL);
    }

    #[test]
    fn saves_and_loads_and_ignores_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = PendingBook::load(dir.path());
        assert_eq!(book.transfers, []);
        book.record(transfer(1, 7, 1));
        book.save().unwrap();
        let again = PendingBook::load(dir.path());
        assert_eq!(again.transfers, [transfer(1, 7, 1)]);
        std::fs::write(dir.path().join("pending.json"), "{not json").unwrap();
        assert_eq!(PendingBook::load(dir.path()).transfers, []);
    }
}
