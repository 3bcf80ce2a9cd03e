//! `balance`, `tx`, `block` and `status`: read-only questions to the node.
//! With `--json` each prints the node's own document (docs/API.md)
//! unchanged; the text form picks out the fields people read.

use super::Context;
use crate::error::WalletError;
use crate::output::{at, fields, plain_at, utc};
use phalanx_chain::Hash;
use serde_json::Value;

pub async fn balance(ctx: &Context, account: &str) -> Result<(), WalletError> {
    let (address, name) = ctx.wallet()?.resolve_account(account)?;
    let node = ctx.node()?;
    let document = node.get_json(&format!("/accounts/{address}")).await?;
    ctx.out.emit(&document, || {
        let mut pairs = vec![("address", address.to_string())];
        if let Some(name) = name {
            pairs.push(("name", name));
        }
        for (key, pointer) in [
            ("balance", "/balance"),
            ("nonce", "/nonce"),
            ("pending_nonce", "/pending_nonce"),
        ] {
            pairs.push((key, plain_at(&document, pointer)));
        }
        fields(&pairs)
    })
}

/// Parses a transaction hash as the node would, before any request.
pub fn parse_hash(input: &str) -> Result<Hash, WalletError> {
    input.parse::<Hash>().map_err(|e| WalletError::BadHash {
        input: input.chars().take(80).collect(),
        reason: e.to_string(),
    })
}

pub async fn tx(ctx: &Context, hash: &str) -> Result<(), WalletError> {
    let hash = parse_hash(hash)?;
    let document = ctx.node()?.get_json(&format!("/txs/{hash}")).await?;
    ctx.out.emit(&document, || {
        let mut pairs = vec![
            ("hash", hash.to_string()),
            ("status", plain_at(&document, "/status")),
        ];
        for (label, pointer) in [
            ("height", "/height"),
            ("index", "/index"),
            ("block", "/block_hash"),
        ] {
            if !at(&document, pointer).is_null() {
                pairs.push((label, plain_at(&document, pointer)));
            }
        }
        fields(&pairs)
    })
}

pub async fn block(ctx: &Context, height: &str) -> Result<(), WalletError> {
    let path = if height == "latest" {
        "/blocks/latest".to_owned()
    } else {
        let height: u64 = height.parse().map_err(|_| WalletError::BadHeight {
            input: height.chars().take(80).collect(),
        })?;
        format!("/blocks/{height}")
    };
    let document = ctx.node()?.get_json(&path).await?;
    ctx.out.emit(&document, || block_text(&document))
}

fn block_text(block: &Value) -> String {
    let field = |pointer: &str| plain_at(block, pointer);
    let why = match at(block, "/header/justification/kind").as_str() {
        Some("bft") => format!(
            "bft, view {}, parent certified in view {} by {} validators",
            field("/header/justification/view"),
            field("/header/justification/parent_cert/view"),
            at(block, "/header/justification/parent_cert/signatures")
                .as_array()
                .map_or(0, Vec::len)
        ),
        Some("proof_of_work") => format!(
            "proof of work, target {}, reward {}, nonce {}",
            field("/header/justification/target"),
            field("/header/justification/reward"),
            field("/header/justification/nonce")
        ),
        Some(kind) => kind.to_owned(),
        None => "-".to_owned(),
    };
    let time = at(block, "/header/timestamp_ms")
        .as_u64()
        .map_or_else(|| "-".to_owned(), |ms| format!("{} ({ms})", utc(ms)));
    let mut text = fields(&[
        ("height", field("/header/height")),
        ("hash", field("/hash")),
        ("finalized", field("/finalized")),
        ("parent", field("/header/parent")),
        ("time", time),
        ("proposer", field("/header/proposer")),
        ("justified", why),
        ("state_root", field("/header/state_root")),
        ("txs", field("/tx_count")),
    ]);
    for tx in at(block, "/transactions").as_array().into_iter().flatten() {
        text.push_str(&format!("  {}\n", plain_at(tx, "")));
    }
    text
}

pub async fn status(ctx: &Context) -> Result<(), WalletError> {
    let node = ctx.node()?;
    let s = node.get_json("/status").await?;
    ctx.out.emit(&s, || {
        let field = |pointer: &str| plain_at(&s, pointer);
        let sync = if at(&s, "/syncing").as_bool() == Some(true) {
            format!("yes, towards height {}", field("/sync_target"))
        } else {
            "no".to_owned()
        };
        fields(&[
            ("node", node.url().to_owned()),
            ("chain_id", field("/chain_id")),
            ("consensus", field("/consensus")),
            ("height", field("/height")),
            ("finalized", field("/finalized_height")),
            ("head", field("/head_hash")),
            ("view", field("/view")),
            ("phase", field("/phase")),
            ("validator", field("/validator")),
            ("peers", field("/peers")),
            (
                "mempool",
                format!(
                    "{} txs, {} bytes",
                    field("/mempool_size"),
                    field("/mempool_bytes")
                ),
            ),
            ("syncing", sync),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block(justification: Value) -> Value {
        json!({
            "hash": "aa",
            "finalized": false,
            "header": {
                "height": 7,
                "parent": "bb",
                "state_root": "cc",
                "timestamp_ms": 1_767_225_601_000u64,
                "proposer": "dd",
                "justification": justification,
            },
            "tx_count": 0,
            "transactions": [],
        })
    }

    fn justified(text: &str) -> &str {
        text.lines()
            .find_map(|l| l.strip_prefix("justified"))
            .map_or("", str::trim)
    }

    #[test]
    fn a_proof_of_work_block_shows_its_target_reward_and_nonce() {
        let text = block_text(&block(json!({
            "kind": "proof_of_work",
            "target": "1d00ffff",
            "reward": 50,
            "nonce": 12345,
        })));
        assert_eq!(
            justified(&text),
            "proof of work, target 1d00ffff, reward 50, nonce 12345"
        );
    }

    #[test]
    fn a_bft_block_shows_its_view_and_certificate() {
        let text = block_text(&block(json!({
            "kind": "bft",
            "view": 4,
            "parent_cert": { "view": 3, "block": "bb", "signatures": [{}, {}] },
        })));
        assert_eq!(
            justified(&text),
            "bft, view 4, parent certified in view 3 by 2 validators"
        );
    }
}
