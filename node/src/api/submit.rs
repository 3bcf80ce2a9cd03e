//! `POST /txs` and `POST /txs/batch`: one transaction, or up to
//! [`MAX_BATCH_TXS`] in one request, through the same steps in the same
//! order, so that each transaction of a batch gets the verdict `POST /txs`
//! would give it:
//!
//! 1. without the mempool lock: the checks that need no state
//!    ([`Mempool::precheck`]: size, chain id), then the signature, under
//!    ZIP 215, through the node's set of verified transactions
//!    ([`phalanx_chain::VerifiedTxs::check`]): a transaction whose hash it
//!    holds (already pending, gossiped to this node, or sent again after a
//!    `mempool_full`: a client waiting for room resends the same
//!    transaction, and each resend cost a signature check) is not checked
//!    again; the others are checked in one batch (off the async runtime
//!    for `POST /txs/batch`; if the batch equation fails it checks each
//!    signature alone and names the bad ones), which gives every
//!    transaction the verdict it would get alone, and the valid ones are
//!    recorded;
//! 2. under one mempool lock ([`Admission`]), admission in request order
//!    ([`Mempool::admit_verified`]: duplicate, nonce, balance, room; one
//!    account read each), so that nonces 0, 1, 2 of one sender in one
//!    batch are all admitted;
//! 3. after the lock: the mempool gauges, one wake-up of a leader waiting
//!    for transactions (if any was admitted), and the admitted
//!    transactions queued for gossip ([`crate::txgossip`], which publishes
//!    them in batches).
//!
//! A batch body is a JSON array of transactions or their postcard
//! encoding ([`TxBatch`]); it holds 1 to [`MAX_BATCH_TXS`] transactions in
//! at most [`MAX_BATCH_BODY_BYTES`] bytes. A body that breaks those bounds,
//! or does not parse, is refused whole: nothing is admitted.

use super::Api;
use super::error::{self, ApiError, ApiJson};
use super::views::{BatchItemView, BatchView, ItemErrorView, SubmittedView};
use crate::mempool::{Mempool, MempoolError, Source};
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use phalanx_chain::{Hash, Transaction, VerifiedTxs, encoding};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, MutexGuard};

/// Most transactions in one `POST /txs/batch` request.
pub const MAX_BATCH_TXS: usize = 4_096;

/// Largest `POST /txs/batch` body: 2 MiB. [`MAX_BATCH_TXS`] transactions
/// of the largest kind (a 32-character chain id, every amount at its
/// maximum) take 1,863,681 bytes as compact JSON, and fit with some
/// indentation; their postcard encoding takes 782,338 bytes.
pub const MAX_BATCH_BODY_BYTES: usize = 2 * 1024 * 1024;

/// A transaction the request's checks refused, with its hash if it
/// decoded, and the error `POST /txs` answers with.
#[derive(Debug)]
struct Refused {
    hash: Option<Hash>,
    error: ApiError,
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        refused.error
    }
}

/// A transaction that passed the checks that need no state.
struct Checked {
    tx: Transaction,
    hash: Hash,
    /// Its encoding, as gossiped.
    bytes: Vec<u8>,
}

impl Checked {
    /// Step 1's checks that need no state.
    fn new(api: &Api, tx: Transaction) -> Result<Checked, Refused> {
        let hash = tx.hash();
        match Mempool::precheck(&tx, &api.node.chain_id) {
            Ok(_) => Ok(Checked {
                bytes: encoding::encode(&tx),
                tx,
                hash,
            }),
            Err(error) => Err(Refused {
                hash: Some(hash),
                error: error.into(),
            }),
        }
    }

    /// Step 1's signature check for one transaction (ZIP 215, the rule
    /// every path shares), unless the node has verified it before.
    fn verify_signature(self, verified: &VerifiedTxs) -> Result<Checked, Refused> {
        let valid = verified.check(std::slice::from_ref(&self.tx), &[self.hash]);
        if valid.first().copied().unwrap_or(false) {
            Ok(self)
        } else {
            Err(self.bad_signature())
        }
    }

    fn bad_signature(self) -> Refused {
        Refused {
            hash: Some(self.hash),
            error: MempoolError::BadSignature { from: self.tx.from }.into(),
        }
    }
}

/// Step 1's signature check for a batch: the transactions that passed the
/// checks so far and that the node has not verified before, in one batch
/// split over the cores.
fn verify_signatures(
    items: Vec<Result<Checked, Refused>>,
    verified: &VerifiedTxs,
) -> Vec<Result<Checked, Refused>> {
    let (txs, hashes): (Vec<Transaction>, Vec<Hash>) = items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|checked| (checked.tx.clone(), checked.hash))
        .unzip();
    let mut valid = verified.check(&txs, &hashes).into_iter();
    items
        .into_iter()
        .map(|item| {
            item.and_then(|checked| {
                // verify_batch answers for every transaction; a missing
                // verdict would count as a bad signature.
                if valid.next().unwrap_or(false) {
                    Ok(checked)
                } else {
                    Err(checked.bad_signature())
                }
            })
        })
        .collect()
}

/// Steps 2 and 3: admissions under one mempool lock, held from
/// [`Admission::begin`] to [`Admission::finish`], which then announces what
/// was admitted. Nothing in between may wait.
struct Admission<'a> {
    api: &'a Api,
    mempool: MutexGuard<'a, Mempool>,
    /// The encodings of the admitted transactions, to gossip.
    admitted: Vec<Vec<u8>>,
}

impl<'a> Admission<'a> {
    fn begin(api: &'a Api) -> Admission<'a> {
        Admission {
            api,
            mempool: api.mempool(),
            admitted: Vec::new(),
        }
    }

    fn admit(&mut self, checked: Checked) -> Result<Hash, Refused> {
        let Checked { tx, hash, bytes } = checked;
        match self
            .mempool
            .admit_verified(tx, hash, Source::Client, self.api.store())
        {
            Ok(admitted) => {
                self.admitted.push(bytes);
                Ok(admitted)
            }
            Err(error) => Err(Refused {
                hash: Some(hash),
                error: error.into(),
            }),
        }
    }

    /// Releases the lock; then the gauges, one wake-up, and the gossip.
    fn finish(self) {
        let Admission {
            api,
            mempool,
            admitted,
        } = self;
        let node = &api.node;
        node.metrics.set_mempool(&mempool);
        drop(mempool);
        if admitted.is_empty() {
            return;
        }
        // A leader waiting for a batch may propose now.
        node.txs_available.notify_one();
        let count = admitted.len();
        if !node.tx_gossip.push(admitted) {
            // The transactions stay admitted: this node can still propose
            // them, and peers get them if they are submitted again elsewhere.
            node.metrics.dropped("tx_gossip_full");
            tracing::warn!(
                count,
                "api: the gossip queue is full; admitted transactions not gossiped"
            );
        }
    }
}

/// `POST /txs`.
pub async fn submit_tx(
    State(api): State<Api>,
    ApiJson(tx): ApiJson<Transaction>,
) -> Result<Response, ApiError> {
    let checked = Checked::new(&api, tx)?.verify_signature(&api.node.verified)?;
    let mut admission = Admission::begin(&api);
    let verdict = admission.admit(checked);
    admission.finish();
    let hash = verdict?;
    Ok((StatusCode::ACCEPTED, Json(SubmittedView { hash })).into_response())
}

/// `POST /txs/batch`: 200 with a verdict for each transaction, in order.
pub async fn submit_batch(
    State(api): State<Api>,
    TxBatch(decoded): TxBatch,
) -> Result<Json<BatchView>, ApiError> {
    let items: Vec<Result<Checked, Refused>> = decoded
        .into_iter()
        .map(|item| item.and_then(|tx| Checked::new(&api, tx)))
        .collect();
    let verified = Arc::clone(&api.node.verified);
    let items = tokio::task::spawn_blocking(move || verify_signatures(items, &verified))
        .await
        .map_err(|e| ApiError::internal(format!("signature verification failed: {e}")))?;
    let mut admission = Admission::begin(&api);
    let verdicts: Vec<Result<Hash, Refused>> = items
        .into_iter()
        .map(|item| item.and_then(|checked| admission.admit(checked)))
        .collect();
    admission.finish();
    let accepted = verdicts.iter().filter(|v| v.is_ok()).count();
    Ok(Json(BatchView {
        accepted,
        rejected: verdicts.len() - accepted,
        results: verdicts.into_iter().map(item_view).collect(),
    }))
}

fn item_view(verdict: Result<Hash, Refused>) -> BatchItemView {
    match verdict {
        Ok(hash) => BatchItemView {
            hash: Some(hash),
            error: None,
        },
        Err(Refused { hash, error }) => BatchItemView {
            hash,
            error: Some(ItemErrorView {
                code: error.code,
                message: error.message,
            }),
        },
    }
}

/// The body of `POST /txs/batch`, by its `Content-Type`:
///
/// - `application/json` (or `application/*+json`): a JSON array of 1 to
///   [`MAX_BATCH_TXS`] values. Each value is read as `POST /txs` reads its
///   body, so one that is not a transaction is refused alone
///   (`invalid_json`, `unknown_field`, without a hash); a body that is not
///   a JSON array is `invalid_json`.
/// - `application/octet-stream`: the postcard encoding of a
///   `Vec<Transaction>`, a varint count then each transaction's canonical
///   encoding, and nothing after. A transaction's length is known only
///   once it decodes, so any decoding failure refuses the whole body
///   (`invalid_encoding`).
///
/// Either way: another type is 415 `unsupported_media_type`; a body over
/// [`MAX_BATCH_BODY_BYTES`] 413 `too_large`; more than [`MAX_BATCH_TXS`]
/// transactions 413 `too_many_txs`; none 400 `empty_batch`.
#[derive(Debug)]
pub struct TxBatch(Vec<Result<Transaction, Refused>>);

impl FromRequest<Api> for TxBatch {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Api) -> Result<Self, ApiError> {
        let json = error::is_json(req.headers());
        if !json && !error::is_octet_stream(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be a JSON array of transactions (Content-Type: application/json) \
                 or their postcard encoding (Content-Type: application/octet-stream)",
            ));
        }
        let body = error::read_body(req, state, MAX_BATCH_BODY_BYTES).await?;
        let txs = if json {
            parse_json(&body)?
        } else {
            parse_postcard(&body)?.into_iter().map(Ok).collect()
        };
        if txs.is_empty() {
            return Err(ApiError::bad_request(
                "empty_batch",
                format!("the batch holds no transaction: send 1 to {MAX_BATCH_TXS}"),
            ));
        }
        Ok(TxBatch(txs))
    }
}

/// 413 `too_many_txs`; `count` if the body said it.
fn too_many(count: Option<u64>) -> ApiError {
    let count = count.map_or_else(|| format!("more than {MAX_BATCH_TXS}"), |c| c.to_string());
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_txs",
        format!("the batch holds {count} transactions, the limit is {MAX_BATCH_TXS} per request"),
    )
}

fn parse_json(body: &[u8]) -> Result<Vec<Result<Transaction, Refused>>, ApiError> {
    let too_many_seen = Cell::new(false);
    let mut reader = serde_json::Deserializer::from_slice(body);
    let values = RawArray {
        too_many: &too_many_seen,
    }
    .deserialize(&mut reader)
    .and_then(|values| reader.end().map(|()| values))
    .map_err(|e| {
        if too_many_seen.get() {
            too_many(None)
        } else {
            error::json_error_in(e, "an array of transactions")
        }
    })?;
    Ok(values
        .into_iter()
        .map(|value| {
            serde_json::from_str(value.get()).map_err(|e| Refused {
                hash: None,
                error: error::json_error(e),
            })
        })
        .collect())
}

/// A JSON array of at most [`MAX_BATCH_TXS`] values, each kept as its text;
/// sets `too_many` when it stops at one more.
struct RawArray<'a> {
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for RawArray<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RawArray<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element::<&'de RawValue>()? {
            if values.len() == MAX_BATCH_TXS {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many transactions"));
            }
            values.push(value);
        }
        Ok(values)
    }
}

fn parse_postcard(body: &[u8]) -> Result<Vec<Transaction>, ApiError> {
    let invalid = |e: &dyn fmt::Display| {
        ApiError::bad_request(
            "invalid_encoding",
            format!("the body is not the postcard encoding of a list of transactions: {e}"),
        )
    };
    // The count first, so that too many is refused before decoding any.
    let (count, _) = postcard::take_from_bytes::<u64>(body)
        .map_err(|e| invalid(&format!("no transaction count ({e})")))?;
    if count > MAX_BATCH_TXS as u64 {
        return Err(too_many(Some(count)));
    }
    encoding::decode(body, MAX_BATCH_BODY_BYTES).map_err(|e| invalid(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::{Address, Amount, ChainId, Nonce};
    use phalanx_crypto::{Keypair, Signature};

    fn largest(i: usize) -> Transaction {
        Transaction {
            // Characters JSON escapes, to make the text as long as it gets.
            chain_id: ChainId::new("\"\\".repeat(16)).unwrap(),
            from: Address::from(Keypair::from_seed(&[i as u8; 32]).public()),
            to: Address([0xff; 32]),
            amount: Amount(u64::MAX),
            fee: Amount(u64::MAX),
            nonce: Nonce(u64::MAX),
            signature: Signature([0xff; 64]),
        }
    }

    #[test]
    fn the_body_limit_fits_the_largest_full_batch() {
        let txs: Vec<Transaction> = (0..MAX_BATCH_TXS).map(largest).collect();
        let compact = serde_json::to_vec(&txs).unwrap();
        assert_eq!(compact.len(), 1_863_681);
        assert!(compact.len() <= MAX_BATCH_BODY_BYTES);
        let indented = serde_json::to_vec_pretty(&txs).unwrap();
        assert!(indented.len() <= MAX_BATCH_BODY_BYTES, "{}", indented.len());
        let binary = encoding::encode(&txs);
        // 4,096 is a two-byte varint.
        assert_eq!(
            binary.len(),
            2 + MAX_BATCH_TXS * phalanx_chain::tx::MAX_TX_BYTES
        );
        assert_eq!(binary.len(), 782_338);
        // Both parse, as many transactions as were sent.
        assert_eq!(parse_json(&compact).unwrap().len(), MAX_BATCH_TXS);
        assert_eq!(parse_postcard(&binary).unwrap(), txs);
    }

    #[test]
    fn postcard_batches_are_a_varint_count_then_each_encoding() {
        let txs: Vec<Transaction> = (0..130).map(largest).collect();
        let mut expected = vec![0x82, 0x01]; // 130 as a varint
        for tx in &txs {
            expected.extend(encoding::encode(tx));
        }
        assert_eq!(encoding::encode(&txs), expected);
        assert_eq!(parse_postcard(&expected).unwrap(), txs);
    }

    #[test]
    fn bad_bodies_are_refused_whole() {
        let code = |r: Result<Vec<Transaction>, ApiError>| r.unwrap_err().code;
        assert_eq!(code(parse_postcard(&[])), "invalid_encoding");
        assert_eq!(code(parse_postcard(&[0x80])), "invalid_encoding");
        let one = encoding::encode(&vec![largest(1)]);
        // Truncated, trailing bytes, an overlong count.
        assert_eq!(
            code(parse_postcard(&one[..one.len() - 1])),
            "invalid_encoding"
        );
        let mut trailing = one.clone();
        trailing.push(0);
        assert_eq!(code(parse_postcard(&trailing)), "invalid_encoding");
        let mut overlong = vec![0x81, 0x00];
        overlong.extend(&one[1..]);
        assert_eq!(code(parse_postcard(&overlong)), "invalid_encoding");
        // A count over the limit is refused before anything is decoded.
        let mut many = Vec::new();
        encoding::push_varint(&mut many, MAX_BATCH_TXS as u64 + 1);
        let e = parse_postcard(&many).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_many_txs")
        );
        assert!(e.message.contains("4097 transactions"), "{}", e.message);

        let json = |body: &str| parse_json(body.as_bytes()).map(|v| v.len());
        assert_eq!(json("[").unwrap_err().code, "invalid_json");
        assert_eq!(json("[] x").unwrap_err().code, "invalid_json");
        let e = json(r#"{"chain_id": "x"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(
            e.message.contains("not an array of transactions"),
            "{}",
            e.message
        );
        assert_eq!(json("[]").unwrap(), 0);
        let over = format!("[{}1]", "1,".repeat(MAX_BATCH_TXS));
        let e = json(&over).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_many_txs")
        );
        assert_eq!(
            json(&format!("[{}1]", "1,".repeat(MAX_BATCH_TXS - 1))).unwrap(),
            MAX_BATCH_TXS
        );
    }

    #[test]
    fn a_json_value_that_is_not_a_transaction_is_refused_alone() {
        let good = serde_json::to_string(&largest(1)).unwrap();
        let items = parse_json(format!(r#"[{good}, {{"memo": 1}}, 7]"#).as_bytes()).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap(), &largest(1));
        let unknown = items[1].as_ref().unwrap_err();
        assert_eq!((unknown.hash, unknown.error.code), (None, "unknown_field"));
        // The same message POST /txs gives for the same text.
        let alone = serde_json::from_str::<Transaction>(r#"{"memo": 1}"#).unwrap_err();
        assert_eq!(unknown.error, error::json_error(alone));
        assert_eq!(items[2].as_ref().unwrap_err().error.code, "invalid_json");
    }
}
