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
//! 4. `GET /txs/{hash}` every [`POLL_INTERVAL`] until `finalized`, with a
//!    spinner on the terminal. A transaction the node stops knowing was
//!    dropped; one not final within `--timeout` ends with exit status 5
//!    and its hash, since it may still be committed later.

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

    let chain_id = chain_id(&node).await?;
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
    let done = wait_final(&node, &hash, timeout, ctx.out.json).await?;
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
    outcome.print(ctx)
}

/// The node's chain id, which every transfer signs.
async fn chain_id(node: &Node) -> Result<ChainId, WalletError> {
    let chain = node.status().await?.chain_id;
    ChainId::new(&chain).map_err(|e| WalletError::BadResponse {
        url: node.url().to_owned(),
        what: "GET /status".into(),
        detail: format!("chain_id: {e}"),
    })
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

/// Polls `GET /txs/{hash}` until it is finalized, dropped, or `timeout`
/// passes. A node that stops answering meanwhile is retried until then.
async fn wait_final(
    node: &Node,
    hash: &Hash,
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
            Ok(status) if status.status == "finalized" => break Ok(status),
            Ok(status) => {
                misses = 0;
                last = match status.height {
                    Some(height) => format!("{} at height {height}", status.status),
                    None => status.status,
                };
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

    #[test]
    fn the_spinner_says_what_it_waits_for() {
        let hash = Hash([0xab; 32]);
        assert_eq!(
            waiting_message(&hash, "pending", Duration::from_millis(3_400)),
            format!("waiting for finality of {} (pending, 3 s)", "ab".repeat(32))
        );
    }
}
