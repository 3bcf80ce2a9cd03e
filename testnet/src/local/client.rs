//! The nodes' HTTP API as the commands use it (docs/API.md): typed answers
//! for the fields they read, and errors that name the node and the request.

use super::net::NodeInfo;
use anyhow::{Context, anyhow, bail};
use phalanx_chain::Transaction;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Longest wait for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `GET /metrics` answer read.
pub const MAX_METRICS_BYTES: usize = 4 * 1024 * 1024;

/// `GET /status`, the fields the commands read.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub chain_id: String,
    pub validator: Option<u16>,
    pub height: Option<u64>,
    pub head_hash: Option<String>,
    pub finalized_height: Option<u64>,
    pub view: u64,
    /// What the protocol does in that view (`normal`, `timed-out`,
    /// `view-change`); absent from nodes that run no protocol instance.
    #[serde(default)]
    pub phase: Option<String>,
    pub peers: usize,
    pub mempool_size: usize,
    pub syncing: bool,
    /// Why consensus halted, if it did.
    #[serde(default)]
    pub halted: Option<String>,
    /// Proof of work: this node's miner (absent or null if it does not
    /// mine).
    #[serde(default)]
    pub mining: Option<Mining>,
    /// Proof of work: the head's cumulative work, hex (absent from nodes
    /// that predate it).
    #[serde(default)]
    pub work: Option<String>,
    /// Proof of work: the confirmations that make a block final.
    #[serde(default)]
    pub confirmations: Option<u64>,
    /// Proof of work: the chain tips this node knows (empty from nodes
    /// that predate the field).
    #[serde(default)]
    pub tips: Vec<Tip>,
}

/// `GET /status`'s `mining`.
#[derive(Debug, Clone, Deserialize)]
pub struct Mining {
    /// The address its blocks pay.
    pub address: String,
    pub hashrate_limit: u64,
    /// Hashes per second over the last status interval.
    pub hash_rate: u64,
    #[serde(default)]
    pub working: bool,
    /// Blocks `POST /mine` still asks for (absent from nodes that predate
    /// it).
    #[serde(default)]
    pub on_demand: Option<u64>,
}

/// One of `GET /status`'s `tips`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Tip {
    pub hash: String,
    pub height: u64,
    /// Cumulative work, hex.
    pub work: String,
    /// Blocks from the tip down to where it leaves the best chain (0 for
    /// the best tip).
    pub branch_len: u64,
    /// The tip of the chain the node follows.
    pub active: bool,
}

/// `GET /blocks/{height}`, the fields the commands read.
#[derive(Debug, Clone, Deserialize)]
pub struct Block {
    pub hash: String,
    pub header: Header,
    pub tx_count: usize,
    pub transactions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub height: u64,
    pub parent: String,
    pub state_root: String,
    pub timestamp_ms: u64,
    /// The proposer's address (the miner's, with proof of work).
    pub proposer: String,
}

/// `GET /txs/{hash}`, the fields the commands read.
#[derive(Debug, Clone, Deserialize)]
pub struct TxStatus {
    /// `pending`, `committed` (proof of work: in a block not final yet) or
    /// `finalized`.
    pub status: String,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub block_hash: Option<String>,
    /// Proof of work: confirmations of its block (absent from nodes that
    /// predate the field).
    #[serde(default)]
    pub confirmations: Option<u64>,
    /// Proof of work: whether its block is on the node's best chain.
    #[serde(default)]
    pub on_best_chain: Option<bool>,
}

/// What `POST /mine` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MineAnswer {
    /// 202: the node mines this many more blocks without its rate limit.
    Mining(u64),
    /// The node has no `POST /mine` (404 or 405: it predates it).
    Unsupported,
}

/// `GET /accounts/{address}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
    pub pending_nonce: u64,
}

/// What became of a submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// 202: admitted to the node's mempool.
    Accepted,
    /// Refused, with the API's error code (docs/API.md §2).
    Rejected { code: String, message: String },
}

/// What `POST /txs/batch` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchAnswer {
    /// 200: one verdict per transaction, in the order sent: `None` if it
    /// was admitted, else the API's error code (docs/API.md §2).
    Verdicts(Vec<Option<String>>),
    /// The whole request was refused (`too_large`, `timeout`, ...).
    Refused { code: String, message: String },
}

#[derive(Debug, Deserialize)]
struct BatchBody {
    results: Vec<BatchResult>,
}

#[derive(Debug, Deserialize)]
struct BatchResult {
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// An HTTP client for the nodes.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> anyhow::Result<Client> {
        // reqwest is built without a TLS provider of its own; it needs one
        // installed even for plain HTTP. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { http })
    }

    /// The underlying client (for streams without the request timeout).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn get<T: DeserializeOwned>(&self, node: &NodeInfo, path: &str) -> anyhow::Result<T> {
        let url = node.url(path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow!("node {}: GET {url}: {}", node.index, plain(&e)))?;
        answer(node, "GET", &url, response).await
    }

    /// `GET <path>`, `None` on 404.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        node: &NodeInfo,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let url = node.url(path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow!("node {}: GET {url}: {}", node.index, plain(&e)))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer(node, "GET", &url, response).await.map(Some)
    }

    pub async fn status(&self, node: &NodeInfo) -> anyhow::Result<Status> {
        self.get(node, "/status").await
    }

    /// The committed block at `height`, `None` if there is none.
    pub async fn block(&self, node: &NodeInfo, height: u64) -> anyhow::Result<Option<Block>> {
        self.get_optional(node, &format!("/blocks/{height}")).await
    }

    /// The block with this hash on the node's chain, `None` if it is not
    /// on it (a proof-of-work reorganization may have taken it off).
    pub async fn block_by_hash(
        &self,
        node: &NodeInfo,
        hash: &phalanx_chain::Hash,
    ) -> anyhow::Result<Option<Block>> {
        self.get_optional(node, &format!("/blocks/hash/{hash}"))
            .await
    }

    pub async fn account(&self, node: &NodeInfo, address: &str) -> anyhow::Result<Account> {
        self.get(node, &format!("/accounts/{address}")).await
    }

    /// True if the transaction is in a final block on `node`.
    pub async fn is_final(&self, node: &NodeInfo, hash: &str) -> anyhow::Result<bool> {
        let status = self.tx(node, hash).await?;
        Ok(status.is_some_and(|s| s.status == "finalized"))
    }

    /// `GET /txs/{hash}`, `None` if the node knows no such transaction.
    pub async fn tx(&self, node: &NodeInfo, hash: &str) -> anyhow::Result<Option<TxStatus>> {
        self.get_optional(node, &format!("/txs/{hash}")).await
    }

    /// `POST /mine {"blocks": N}`.
    pub async fn mine(&self, node: &NodeInfo, blocks: u64) -> anyhow::Result<MineAnswer> {
        let url = node.url("/mine");
        let response = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "blocks": blocks }))
            .send()
            .await
            .map_err(|e| anyhow!("node {}: POST {url}: {}", node.index, plain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        {
            return Ok(MineAnswer::Unsupported);
        }
        let body: serde_json::Value = answer(node, "POST", &url, response).await?;
        Ok(MineAnswer::Mining(
            body.get("mining")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(blocks),
        ))
    }

    /// The text of `GET /metrics` (at most [`MAX_METRICS_BYTES`]).
    pub async fn metrics_text(&self, node: &NodeInfo) -> anyhow::Result<String> {
        let url = node.url("/metrics");
        let fail = |e: &reqwest::Error| anyhow!("node {}: GET {url}: {}", node.index, plain(e));
        let mut response = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fail(&e))?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(&e))? {
            if body.len() + chunk.len() > MAX_METRICS_BYTES {
                bail!(
                    "node {}: GET {url}: the answer is over {MAX_METRICS_BYTES} bytes",
                    node.index
                );
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The counter or gauge `name` (without labels) from `GET /metrics`,
    /// `None` if it has none.
    pub async fn metric(&self, node: &NodeInfo, name: &str) -> anyhow::Result<Option<f64>> {
        let text = self.metrics_text(node).await?;
        Ok(text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        }))
    }

    /// `POST /txs`.
    pub async fn submit(&self, node: &NodeInfo, tx: &Transaction) -> anyhow::Result<Submitted> {
        let url = node.url("/txs");
        let response = self
            .http
            .post(&url)
            .json(tx)
            .send()
            .await
            .map_err(|e| anyhow!("node {}: POST {url}: {}", node.index, plain(&e)))?;
        if response.status().is_success() {
            return Ok(Submitted::Accepted);
        }
        let status = response.status();
        match response.json::<ErrorBody>().await {
            Ok(body) => Ok(Submitted::Rejected {
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Ok(Submitted::Rejected {
                code: format!("http_{}", status.as_u16()),
                message: status.to_string(),
            }),
        }
    }

    /// `POST <path>` with a JSON body (the admin API).
    pub async fn post_json(
        &self,
        node: &NodeInfo,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let url = node.url(path);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| anyhow!("node {}: POST {url}: {}", node.index, plain(&e)))?;
        answer(node, "POST", &url, response).await
    }

    /// `phalanx_committed_txs_total` from `GET /metrics`.
    pub async fn committed_txs(&self, node: &NodeInfo) -> anyhow::Result<u64> {
        let value = self.metric(node, "phalanx_committed_txs_total").await?;
        value.map(|v| v as u64).ok_or_else(|| {
            anyhow!(
                "node {}: /metrics has no phalanx_committed_txs_total",
                node.index
            )
        })
    }

    /// `POST /txs/batch` with `body`, the postcard encoding of a
    /// `Vec<Transaction>` (`application/octet-stream`), waiting at most
    /// `timeout` for the answer.
    pub async fn submit_batch(
        &self,
        node: &NodeInfo,
        body: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<BatchAnswer> {
        let url = node.url("/txs/batch");
        let fail = |e: &reqwest::Error| anyhow!("node {}: POST {url}: {}", node.index, plain(e));
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| fail(&e))?;
        let status = response.status();
        if status.is_success() {
            let verdicts: BatchBody = response.json().await.map_err(|e| fail(&e))?;
            return Ok(BatchAnswer::Verdicts(
                verdicts
                    .results
                    .into_iter()
                    .map(|r| r.error.map(|e| e.code))
                    .collect(),
            ));
        }
        Ok(match response.json::<ErrorBody>().await {
            Ok(body) => BatchAnswer::Refused {
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => BatchAnswer::Refused {
                code: format!("http_{}", status.as_u16()),
                message: status.to_string(),
            },
        })
    }
}

/// The body as `T` on success, else the API's error message.
async fn answer<T: DeserializeOwned>(
    node: &NodeInfo,
    method: &str,
    url: &str,
    response: reqwest::Response,
) -> anyhow::Result<T> {
    let status = response.status();
    if status.is_success() {
        return response
            .json()
            .await
            .map_err(|e| anyhow!("node {}: {method} {url}: {}", node.index, plain(&e)));
    }
    let detail = match response.json::<ErrorBody>().await {
        Ok(body) => format!("{} ({})", body.error.message, body.error.code),
        Err(_) => status.to_string(),
    };
    Err(anyhow!(
        "node {}: {method} {url}: {status}: {detail}",
        node.index
    ))
}

/// A reqwest error with its cause ("connection refused"), without the URL
/// it repeats.
fn plain(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else if error.is_decode() {
        "unexpected answer".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    let mut depth = 0;
    while let Some(cause) = source {
        if depth >= 4 {
            break;
        }
        text.push_str(&format!(": {cause}"));
        source = cause.source();
        depth += 1;
    }
    text
}
