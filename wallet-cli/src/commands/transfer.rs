//! `transfer`: sign a transfer with a wallet key, submit it, and (unless
//! `--no-wait`) wait until the node reports it final.
//!
//! 1. Everything local is checked first: the recipient (an address or a
//!    key's name), the sender's key (decrypted if needed). A bad address
//!    never costs a request.
//! 2. The chain id comes from `GET /status`, the sender's nonces from
//!    `GET /accounts/{address}`; the nonce is chosen with the wallet's
//!    memory of its own pending transfers (pending.rs).
//! 3. `POST /txs`; a refusal is reported with the node's code.
//! 4. `GET /txs/{hash}` every [`POLL_INTERVAL`] until `finalized` (and,
//!    with `--confirmations N`, at least N confirmations), with a spinner
//!    on the terminal that shows the confirmations so far. `finalized` is
//!    the node's word: on BFT chains a committed block is final; on
//!    proof-of-work chains the node's finalized height reaches the block
//!    once it has the genesis `confirmations` (k), and `committed` before
//!    that is not enough, since a reorganization may still take it off
//!    (it is then `pending` again, or unknown: dropped). A transaction
//!    the node stops knowing was dropped; one not final within
//!    `--timeout` ends with exit status 5 and its hash, since it may still
//!    be committed later.

use super::Context;
use crate::cli::TransferArgs;
use crate::error::WalletError;
use crate::output::fields;
use crate::pending::{BookLock, PendingBook, PendingTransfer};
use crate::rpc::{Node, TxStatus};
use indicatif::{ProgressBar, ProgressStyle};
use phalanx_chain::{Address, Amount, ChainId, Hash, Nonce, Transaction};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime};

/// How often the node is asked about a transfer being waited on.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A transfer the node answers `not_found` for this many polls in a row
/// was dropped (one miss may be a commit seen half-way).
const DROPPED_AFTER_MISSES: u32 = 2;

pub async fn transfer(ctx: &Context, args: &TransferArgs) -> Result<(), WalletError> {
    let wallet = ctx.wallet()?;
    let (to, _) = wallet.resolve_account(&args.to)?;
    let keypair = wallet.unlock(&args.from)?;
    let from = Address::from(keypair.public());
    let node = ctx.node()?;

    let status = node.status().await?;
    let chain_id = chain_id(&node, &status.chain_id)?;
    let goal = Goal {
        confirmations: args.confirmations,
        chain_confirmations: status.confirmations,
    };
    // Other wallets on this directory wait from here until this transfer
    // is in the book, so none of them picks the same nonce.
    let lock = BookLock::acquire(wallet.dir())?;
    let mut book = PendingBook::load(wallet.dir());
    let nonce = choose_nonce(&node, &mut book, chain_id.as_str(), &from).await?;
    let tx = Transaction::sign(
        &keypair,
        chain_id,
        to,
        Amount(args.amount),
        Amount(args.fee),
        nonce,
    );
    let hash = submit(&node, &tx).await?;
    book.record(PendingTransfer {
        chain_id: tx.chain_id.as_str().to_owned(),
        from,
        nonce,
        hash,
        rpc: node.url().to_owned(),
        submitted_ms: now_ms(),
    });
    save_or_warn(&book);
    drop(lock);

    let mut outcome = Outcome::pending(&tx, hash);
    if args.no_wait {
        return outcome.print(ctx);
    }
    if !ctx.out.json {
        eprintln!("submitted {hash} (nonce {nonce})");
    }
    let timeout = Duration::from_secs(args.timeout);
    let done = wait_final(&node, &hash, goal, timeout, ctx.out.json).await?;
    // Final: this nonce and every one below it are used.
    let _lock = BookLock::acquire(wallet.dir())?;
    let mut book = PendingBook::load(wallet.dir());
    book.forget(&hash);
    if let Some(next) = nonce.next() {
        book.prune_committed(tx.chain_id.as_str(), &from, next);
    }
    save_or_warn(&book);
    outcome.status = done.status;
    outcome.height = done.height;
    outcome.block_hash = done.block_hash;
    outcome.confirmations = done.confirmations;
    outcome.print(ctx)
}

/// The node's chain id (from `GET /status`), which every transfer signs.
fn chain_id(node: &Node, chain: &str) -> Result<ChainId, WalletError> {
    ChainId::new(chain).map_err(|e| WalletError::BadResponse {
        url: node.url().to_owned(),
        what: "GET /status".into(),
        detail: format!("chain_id: {e}"),
    })
}

/// What `transfer` waits for: the node's finality, and with
/// `--confirmations` that many confirmations too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goal {
    /// `--confirmations N`.
    pub confirmations: Option<u64>,
    /// The chain's own k (proof of work; `GET /status`), for progress.
    pub chain_confirmations: Option<u64>,
}

impl Goal {
    /// Whether the transfer in `status` is where it should be. An error
    /// (for the user) if `--confirmations` was given and the node does
    /// not report confirmations.
    pub fn reached(&self, status: &TxStatus) -> Result<bool, String> {
        if status.status != "finalized" {
            return Ok(false);
        }
        match (self.confirmations, status.confirmations) {
            (None, _) => Ok(true),
            (Some(wanted), Some(have)) => Ok(have >= wanted),
            (Some(_), None) => Err(
                "its answer has no \"confirmations\" (a node older than the wallet): \
                 --confirmations needs a node that reports them"
                    .to_owned(),
            ),
        }
    }

    /// The confirmations awaited, if a number is known.
    fn awaited(&self) -> Option<u64> {
        match (self.confirmations, self.chain_confirmations) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Where the transfer stands, for the spinner and a timeout:
    /// `committed at height 5, 2 of 6 confirmations`.
    pub fn progress(&self, status: &TxStatus) -> String {
        let mut text = status.status.clone();
        if let Some(height) = status.height {
            text.push_str(&format!(" at height {height}"));
        }
        if let Some(have) = status.confirmations {
            let plural = if have == 1 { "" } else { "s" };
            match self.awaited() {
                Some(awaited) => text.push_str(&format!(", {have} of {awaited} confirmations")),
                None => text.push_str(&format!(", {have} confirmation{plural}")),
            }
        }
        text
    }
}

/// The nonce for a new transfer from `from`: the node's `pending_nonce`,
/// or past this wallet's own pending transfers (pending.rs), after
/// forgetting those that are committed, final or dropped.
async fn choose_nonce(
    node: &Node,
    book: &mut PendingBook,
    chain: &str,
    from: &Address,
) -> Result<Nonce, WalletError> {
    let account = node.account(from).await?;
    book.prune_committed(chain, from, account.nonce);
    forget_dropped(node, book, chain, from).await?;
    book.next_nonce(chain, from, account.pending_nonce)
        .ok_or_else(|| WalletError::Config(format!("account {from} has used every nonce")))
}

/// `POST /txs`, checking that the node names the transfer by its hash.
async fn submit(node: &Node, tx: &Transaction) -> Result<Hash, WalletError> {
    let hash = node.submit(tx).await?;
    if hash != tx.hash() {
        return Err(WalletError::BadResponse {
            url: node.url().to_owned(),
            what: "POST /txs".into(),
            detail: format!("it named the transfer {hash}, whose hash is {}", tx.hash()),
        });
    }
    Ok(hash)
}

/// Forgets remembered transfers that the node they were sent to no longer
/// knows (dropped), and those it reports final.
async fn forget_dropped(
    node: &Node,
    book: &mut PendingBook,
    chain: &str,
    from: &Address,
) -> Result<(), WalletError> {
    let mine: Vec<Hash> = book
        .of(chain, from)
        .filter(|t| t.rpc == node.url())
        .map(|t| t.hash)
        .collect();
    for hash in mine {
        match node.tx(&hash).await {
            Ok(status) if status.status == "finalized" => book.forget(&hash),
            Ok(_) => {}
            Err(WalletError::Refused { code, .. }) if code == "not_found" => book.forget(&hash),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn save_or_warn(book: &PendingBook) {
    if let Err(e) = book.save() {
        eprintln!("warning: could not remember the pending transfer: {e}");
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The spinner's line.
pub fn waiting_message(hash: &Hash, status: &str, waited: Duration) -> String {
    format!(
        "waiting for finality of {hash} ({status}, {} s)",
        waited.as_secs()
    )
}

/// Polls `GET /txs/{hash}` until it reaches `goal`, is dropped, or
/// `timeout` passes. A node that stops answering meanwhile is retried
/// until then.
async fn wait_final(
    node: &Node,
    hash: &Hash,
    goal: Goal,
    timeout: Duration,
    quiet: bool,
) -> Result<TxStatus, WalletError> {
    let spinner = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    let mut last = "submitted".to_owned();
    let mut misses = 0;
    let outcome = loop {
        spinner.set_message(waiting_message(hash, &last, start.elapsed()));
        match node.tx(hash).await {
            Ok(status) => {
                misses = 0;
                match goal.reached(&status) {
                    Ok(true) => break Ok(status),
                    Ok(false) => last = goal.progress(&status),
                    Err(detail) => {
                        break Err(WalletError::BadResponse {
                            url: node.url().to_owned(),
                            what: format!("GET /txs/{hash}"),
                            detail,
                        });
                    }
                }
            }
            Err(WalletError::Refused { code, .. }) if code == "not_found" => {
                misses += 1;
                if misses >= DROPPED_AFTER_MISSES {
                    break Err(WalletError::Dropped {
                        hash: hash.to_string(),
                        url: node.url().to_owned(),
                    });
                }
            }
            Err(WalletError::Refused { code, .. }) if code == "tx_index_off" => {
                break Err(WalletError::Unindexed {
                    hash: hash.to_string(),
                    url: node.url().to_owned(),
                });
            }
            Err(WalletError::Unreachable { .. }) => last = "node not answering".to_owned(),
            Err(e) => break Err(e),
        }
        if start.elapsed() >= timeout {
            break Err(WalletError::Timeout {
                hash: hash.to_string(),
                waited_secs: timeout.as_secs(),
                last_status: last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    spinner.finish_and_clear();
    outcome
}

/// What `transfer` prints: the transfer, and where it ended up.
#[derive(Debug, Serialize)]
struct Outcome {
    hash: Hash,
    /// `pending` with `--no-wait`, else `finalized`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_hash: Option<Hash>,
    /// Its block and the blocks on top, when it was found final.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmations: Option<u64>,
    chain_id: String,
    from: Address,
    to: Address,
    amount: Amount,
    fee: Amount,
    nonce: Nonce,
}

impl Outcome {
    /// `tx`, accepted under `hash` and not yet final.
    fn pending(tx: &Transaction, hash: Hash) -> Outcome {
        Outcome {
            hash,
            status: "pending".to_owned(),
            height: None,
            block_hash: None,
            confirmations: None,
            chain_id: tx.chain_id.as_str().to_owned(),
            from: tx.from,
            to: tx.to,
            amount: tx.amount,
            fee: tx.fee,
            nonce: tx.nonce,
        }
    }

    fn print(&self, ctx: &Context) -> Result<(), WalletError> {
        let json = serde_json::to_value(self).map_err(|e| WalletError::Config(e.to_string()))?;
        ctx.out.emit(&json, || {
            let mut pairs = vec![
                ("hash", self.hash.to_string()),
                ("status", self.status.clone()),
            ];
            if let Some(height) = self.height {
                pairs.push(("height", height.to_string()));
            }
            if let Some(block) = self.block_hash {
                pairs.push(("block", block.to_string()));
            }
            if let Some(confirmations) = self.confirmations {
                pairs.push(("confirmations", confirmations.to_string()));
            }
            pairs.extend([
                ("from", self.from.to_string()),
                ("to", self.to.to_string()),
                ("amount", self.amount.to_string()),
                ("fee", self.fee.to_string()),
                ("nonce", self.nonce.to_string()),
            ]);
            fields(&pairs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(status: &str, height: Option<u64>, confirmations: Option<u64>) -> TxStatus {
        TxStatus {
            status: status.to_owned(),
            height,
            block_hash: None,
            confirmations,
        }
    }

    #[test]
    fn finality_is_the_nodes_word_and_more_confirmations_can_be_asked_for() {
        let chain = Goal {
            confirmations: None,
            chain_confirmations: Some(6),
        };
        // Committed is never enough, whatever the count says: the node's
        // finalized height has not reached the block.
        assert_eq!(chain.reached(&tx("committed", Some(5), Some(9))), Ok(false));
        assert_eq!(chain.reached(&tx("pending", None, None)), Ok(false));
        assert_eq!(chain.reached(&tx("finalized", Some(5), Some(6))), Ok(true));
        // An older node without counts: its finality still counts.
        assert_eq!(chain.reached(&tx("finalized", Some(5), None)), Ok(true));

        let more = Goal {
            confirmations: Some(10),
            ..chain
        };
        assert_eq!(more.reached(&tx("finalized", Some(5), Some(6))), Ok(false));
        assert_eq!(more.reached(&tx("finalized", Some(5), Some(10))), Ok(true));
        assert_eq!(more.reached(&tx("committed", Some(5), Some(12))), Ok(false));
        assert!(more.reached(&tx("finalized", Some(5), None)).is_err());
        // Fewer than the chain's k: finality decides.
        let fewer = Goal {
            confirmations: Some(2),
            ..chain
        };
        assert_eq!(fewer.reached(&tx("committed", Some(5), Some(3))), Ok(false));
    }

    #[test]
    fn progress_shows_confirmations_of_those_awaited() {
        let chain = Goal {
            confirmations: None,
            chain_confirmations: Some(6),
        };
        assert_eq!(
            chain.progress(&tx("committed", Some(5), Some(2))),
            "committed at height 5, 2 of 6 confirmations"
        );
        let more = Goal {
            confirmations: Some(10),
            ..chain
        };
        assert_eq!(
            more.progress(&tx("finalized", Some(5), Some(7))),
            "finalized at height 5, 7 of 10 confirmations"
        );
        let bft = Goal {
            confirmations: None,
            chain_confirmations: None,
        };
        assert_eq!(
            bft.progress(&tx("finalized", Some(3), Some(1))),
            "finalized at height 3, 1 confirmation"
        );
        assert_eq!(bft.progress(&tx("pending", None, None)), "pending");
    }

    #[test]
    fn the_spinner_says_what_it_waits_for() {
        let hash = Hash([0xab; 32]);
        assert_eq!(
            waiting_message(&hash, "pending", Duration::from_millis(3_400)),
            format!("waiting for finality of {} (pending, 3 s)", "ab".repeat(32))
        );
    }
}
