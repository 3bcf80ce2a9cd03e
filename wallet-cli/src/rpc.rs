//! The node's HTTP API (docs/API.md), as the wallet uses it.
//!
//! Every request has a deadline ([`REQUEST_TIMEOUT`]) except the event
//! stream, which is bounded per read instead ([`STREAM_READ_TIMEOUT`],
//! longer than the node's 15 s keep-alive). Failures are sorted into what
//! the user can act on: no answer at all ([`WalletError::Unreachable`]),
//! the node's own `{"error": {"code", "message"}}` answer
//! ([`WalletError::Refused`], keeping the node's code), or an answer that
//! is not the API ([`WalletError::BadResponse`]). Responses are read into
//! tolerant structs (unknown fields ignored), so a newer node still works.

use crate::error::WalletError;
use phalanx_chain::{Address, Hash, Nonce, Transaction};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Deadline of one ordinary request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence tolerated on the event stream.
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(45);
/// A response body larger than this is refused (blocks are the largest
/// documents; a full block of 10,000 transactions as hashes is ~700 KiB).
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// `GET /status`, the fields the wallet reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub chain_id: String,
    /// Proof of work: the confirmations that make a block final (null, or
    /// absent from older nodes, otherwise).
    #[serde(default)]
    pub confirmations: Option<u64>,
}

/// `GET /accounts/{address}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub nonce: Nonce,
    pub pending_nonce: Nonce,
}

/// `GET /txs/{hash}`.
#[derive(Debug, Clone, Deserialize)]
pub struct TxStatus {
    pub status: String,
    pub height: Option<u64>,
    pub block_hash: Option<Hash>,
    /// Its block and the blocks on top, once committed (absent from older
    /// nodes).
    #[serde(default)]
    pub confirmations: Option<u64>,
}

#[derive(Deserialize)]
struct Submitted {
    hash: Hash,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
}

/// A client for one node.
#[derive(Debug, Clone)]
pub struct Node {
    base: reqwest::Url,
    shown: String,
    client: reqwest::Client,
}

impl Node {
    /// A client for the node at `url` (`http://host:port`, or `https`).
    /// Needs a rustls crypto provider installed (see `main`).
    pub fn new(url: &str) -> Result<Node, WalletError> {
        let base = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                WalletError::Config(format!(
                    "invalid --rpc URL {url:?}: expected http://HOST:PORT"
                ))
            })?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STREAM_READ_TIMEOUT)
            .user_agent(concat!("phalanx-wallet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WalletError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Node {
            shown: base.as_str().trim_end_matches('/').to_owned(),
            base,
            client,
        })
    }

    /// The node's URL as the user gave it (normalized).
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn endpoint(&self, path: &str) -> Result<reqwest::Url, WalletError> {
        let base = self.base.as_str().trim_end_matches('/');
        reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| WalletError::Config(format!("invalid URL {base}{path}: {e}")))
    }

    pub async fn status(&self) -> Result<Status, WalletError> {
        self.get("/status").await
    }

    pub async fn account(&self, address: &Address) -> Result<Account, WalletError> {
        self.get(&format!("/accounts/{address}")).await
    }

    pub async fn tx(&self, hash: &Hash) -> Result<TxStatus, WalletError> {
        self.get(&format!("/txs/{hash}")).await
    }

    /// `POST /txs`: the hash the node gives the accepted transaction.
    pub async fn submit(&self, tx: &Transaction) -> Result<Hash, WalletError> {
        let what = "POST /txs";
        let request = self
            .client
            .post(self.endpoint("/txs")?)
            .timeout(REQUEST_TIMEOUT)
            .json(tx);
        let body = self.call(what, request).await?;
        let submitted: Submitted = self.decode(what, &body)?;
        Ok(submitted.hash)
    }

    /// `GET path` as raw JSON, for commands that show the node's document
    /// as it is.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, WalletError> {
        self.get(path).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, WalletError> {
        let what = format!("GET {path}");
        let request = self
            .client
            .get(self.endpoint(path)?)
            .timeout(REQUEST_TIMEOUT);
        let body = self.call(&what, request).await?;
        self.decode(&what, &body)
    }

    /// `GET /events`: the open stream, read with [`reqwest::Response::chunk`].
    pub async fn events(&self) -> Result<reqwest::Response, WalletError> {
        let what = "GET /events";
        let response = self
            .client
            .get(self.endpoint("/events")?)
            .send()
            .await
            .map_err(|e| self.transport_error(what, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = self.read_body(what, response).await?;
        Err(self.refusal(what, status, &body))
    }

    /// Sends `request` and returns the body of a 2xx answer; a non-2xx
    /// answer becomes the node's error.
    async fn call(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, WalletError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(what, &e))?;
        let status = response.status();
        let body = self.read_body(what, response).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(self.refusal(what, status, &body))
        }
    }

    async fn read_body(
        &self,
        what: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, WalletError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(what, &e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(self.bad_response(
                    what,
                    format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                ));
            }
        }
        Ok(body)
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, body: &[u8]) -> Result<T, WalletError> {
        serde_json::from_slice(body).map_err(|e| self.bad_response(what, e.to_string()))
    }

    /// The node's `{"error": ...}` answer, or a description of whatever
    /// else came back with a failing status.
    fn refusal(&self, what: &str, status: reqwest::StatusCode, body: &[u8]) -> WalletError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody {
                error: ErrorFields { code, message },
            }) => WalletError::Refused { code, message },
            Err(_) => {
                let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
                self.bad_response(what, format!("HTTP {status}: {text:?}"))
            }
        }
    }

    fn bad_response(&self, what: &str, detail: String) -> WalletError {
        WalletError::BadResponse {
            url: self.shown.clone(),
            what: what.to_owned(),
            detail,
        }
    }

    fn transport_error(&self, what: &str, e: &reqwest::Error) -> WalletError {
        let detail = if e.is_connect() {
            format!("cannot connect: {}", root_cause(e))
        } else if e.is_timeout() {
            format!("{what} got no answer in time")
        } else {
            format!("{what} failed: {}", root_cause(e))
        };
        WalletError::Unreachable {
            url: self.shown.clone(),
            detail,
        }
    }
}

/// The innermost error's message ("Connection refused (os error 111)"),
/// which says more than reqwest's outer "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
