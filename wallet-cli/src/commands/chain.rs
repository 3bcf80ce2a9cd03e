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
            ("confirmations", "/confirmations"),
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
    ctx.out.emit(&s, || status_text(node.url(), &s))
}

fn status_text(url: &str, s: &Value) -> String {
    let field = |pointer: &str| plain_at(s, pointer);
    let sync = if at(s, "/syncing").as_bool() == Some(true) {
        format!("yes, towards height {}", field("/sync_target"))
    } else {
        "no".to_owned()
    };
    let mut pairs = vec![
        ("node", url.to_owned()),
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
    ];
    // BFT protocols: the view timer's current length.
    if !at(s, "/view_timeout_ms").is_null() {
        let phase = pairs.iter().position(|(k, _)| *k == "phase").unwrap_or(0);
        pairs.insert(
            phase + 1,
            ("view timeout", format!("{} ms", field("/view_timeout_ms"))),
        );
    }
    // Proof of work: what makes a block final, the chain's work, the
    // tips known, the miner.
    if !at(s, "/confirmations").is_null() {
        pairs.push(("confirmations", field("/confirmations")));
        pairs.push(("work", field("/work")));
        let tips = at(s, "/tips").as_array().map_or(0, Vec::len);
        let stale = at(s, "/tips")
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| at(t, "/active").as_bool() == Some(false))
            .count();
        pairs.push(("tips", format!("{tips} ({stale} on other branches)")));
    }
    if !at(s, "/mining").is_null() {
        let on_demand = at(s, "/mining/on_demand").as_u64().unwrap_or(0);
        let mut mining = format!(
            "{} hashes/s (limit {}), {} thread(s), paying {}",
            field("/mining/hash_rate"),
            field("/mining/hashrate_limit"),
            field("/mining/threads"),
            field("/mining/address")
        );
        if on_demand > 0 {
            mining.push_str(&format!(", {on_demand} block(s) on demand"));
        }
        pairs.push(("mining", mining));
    }
    if !at(s, "/halted").is_null() {
        pairs.push(("halted", field("/halted")));
    }
    fields(&pairs)
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

    fn line<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with(' ')))
            .map(str::trim)
    }

    #[test]
    fn a_proof_of_work_status_shows_finality_work_tips_and_the_miner() {
        let status = json!({
            "chain_id": "c", "consensus": "pow", "height": 9, "finalized_height": 4,
            "confirmations": 6, "work": "9a",
            "tips": [{"active": true}, {"active": false}],
            "mining": {
                "address": "ab", "threads": 2, "hashrate_limit": 100, "hash_rate": 98,
                "working": true, "on_demand": 3
            },
            "halted": null,
        });
        let text = status_text("http://n", &status);
        assert_eq!(line(&text, "confirmations"), Some("6"));
        assert_eq!(line(&text, "work"), Some("9a"));
        assert_eq!(line(&text, "tips"), Some("2 (1 on other branches)"));
        assert_eq!(
            line(&text, "mining"),
            Some("98 hashes/s (limit 100), 2 thread(s), paying ab, 3 block(s) on demand")
        );
        assert_eq!(line(&text, "halted"), None);

        let bft = json!({"consensus": "hotstuff", "tips": [], "work": null,
            "confirmations": null, "mining": null, "halted": "disk full"});
        let text = status_text("http://n", &bft);
        assert_eq!(line(&text, "consensus"), Some("hotstuff"));
        for key in ["confirmations", "work", "tips", "mining"] {
            assert_eq!(line(&text, key), None, "{text}");
        }
        assert_eq!(line(&text, "halted"), Some("disk full"));
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
