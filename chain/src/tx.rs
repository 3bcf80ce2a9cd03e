//! Transfer transactions.
//!
//! Signing bytes (docs/PROTOCOL.md): `"PHALANX/TX/v1"` ‖ len(chain_id) (one
//! byte) ‖ chain_id ‖ from (32) ‖ to (32) ‖ amount (u64 LE) ‖ fee (u64 LE) ‖
//! nonce (u64 LE). The signature is plain ed25519 over those bytes. The hash
//! is BLAKE3(signing bytes ‖ signature).

use crate::error::TxError;
use crate::types::{Address, Amount, Nonce};
use phalanx_crypto::{
    BatchEntry, ChainId, Domain, Hash, Keypair, PublicKey, Signature, SigningBytes,
};
use serde::{Deserialize, Serialize};

/// A signed transfer of `amount` from `from` to `to`, paying `fee` to the
/// block's proposer. JSON form:
/// `{"chain_id": "...", "from": "<hex>", "to": "<hex>", "amount": 1,
/// "fee": 1, "nonce": 0, "signature": "<128 hex>"}`; unknown fields are
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub chain_id: ChainId,
    pub from: Address,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
    pub nonce: Nonce,
    pub signature: Signature,
}

/// The largest encoding of a transaction in postcard: chain id (1 + 32),
/// two addresses (64), three u64 varints (3 × 10), a signature (64).
pub const MAX_TX_BYTES: usize = 33 + 64 + 30 + 64;

impl Transaction {
    /// Builds and signs a transfer from `keypair`'s account.
    pub fn sign(
        keypair: &Keypair,
        chain_id: ChainId,
        to: Address,
        amount: Amount,
        fee: Amount,
        nonce: Nonce,
    ) -> Transaction {
        let mut tx = Transaction {
            chain_id,
            from: keypair.public().into(),
            to,
            amount,
            fee,
            nonce,
            signature: Signature([0; 64]),
        };
        tx.signature = keypair.sign(&tx.signing_bytes());
        tx
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> SigningBytes {
        Domain::Transaction
            .begin(&self.chain_id)
            .bytes(self.from.as_bytes())
            .bytes(self.to.as_bytes())
            .u64_le(self.amount.0)
            .u64_le(self.fee.0)
            .u64_le(self.nonce.0)
            .finish()
    }

    /// BLAKE3(signing bytes ‖ signature).
    pub fn hash(&self) -> Hash {
        Hash::digest_parts(&[self.signing_bytes().as_bytes(), self.signature.as_bytes()])
    }

    /// Checks the signature under the ZIP 215 rules of
    /// `phalanx_crypto::zip215` (the verdict `verify_batch` gives too).
    pub fn verify_signature(&self) -> Result<(), TxError> {
        self.from
            .public_key()
            .verify(&self.signing_bytes(), &self.signature)
            .map_err(|_| TxError::BadSignature { from: self.from })
    }

    /// Verifies the signatures of `txs` in one batch; `result[i]` says
    /// whether `txs[i]`'s verifies (the same verdict as
    /// [`Transaction::verify_signature`]: see `phalanx_crypto::batch`).
    pub fn verify_batch(txs: &[&Transaction]) -> Vec<bool> {
        let messages: Vec<SigningBytes> = txs.iter().map(|tx| tx.signing_bytes()).collect();
        let keys: Vec<PublicKey> = txs.iter().map(|tx| tx.from.public_key()).collect();
        let entries: Vec<BatchEntry<'_>> = messages
            .iter()
            .zip(&keys)
            .zip(txs)
            .map(|((message, key), tx)| BatchEntry {
                message,
                key,
                signature: &tx.signature,
            })
            .collect();
        let mut valid = vec![true; txs.len()];
        for index in phalanx_crypto::verify_batch(&entries) {
            if let Some(slot) = valid.get_mut(index) {
                *slot = false;
            }
        }
        valid
    }

    /// Amount plus fee, the most the sender's balance must cover.
    pub fn total_cost(&self) -> Result<Amount, TxError> {
        self.amount
            .checked_add(self.fee)
            .ok_or(TxError::AmountOverflow {
                amount: self.amount,
                fee: self.fee,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        let kp = Keypair::from_seed(&[1; 32]);
        Transaction::sign(
            &kp,
            ChainId::new("phalanx-test").unwrap(),
            Address([2; 32]),
            Amount(10),
            Amount(1),
            Nonce(0),
        )
    }

    #[test]
    fn signed_transaction_verifies_and_encodes_within_bound() {
        let tx = sample();
        assert_eq!(tx.verify_signature(), Ok(()));
        let bytes = postcard::to_stdvec(&tx).unwrap();
        assert!(bytes.len() <= MAX_TX_BYTES);
        let max = Transaction {
            chain_id: ChainId::new("x".repeat(32)).unwrap(),
            amount: Amount(u64::MAX),
            fee: Amount(u64::MAX),
            nonce: Nonce(u64::MAX),
            ..tx
        };
        assert_eq!(postcard::to_stdvec(&max).unwrap().len(), MAX_TX_BYTES);
    }

    #[test]
    fn json_form_is_the_documented_one_and_refuses_unknown_fields() {
        let tx = sample();
        let json = serde_json::to_value(&tx).unwrap();
        let obj = json.as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "amount",
                "chain_id",
                "fee",
                "from",
                "nonce",
                "signature",
                "to"
            ]
        );
        assert_eq!(obj["amount"], 10);
        assert_eq!(obj["signature"].as_str().unwrap().len(), 128);
        let mut with_extra = json.clone();
        with_extra["memo"] = "hi".into();
        let err = serde_json::from_value::<Transaction>(with_extra).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let mut upper = json.clone();
        upper["to"] = "AB".repeat(32).into();
        assert!(serde_json::from_value::<Transaction>(upper).is_err());
        assert_eq!(serde_json::from_value::<Transaction>(json).unwrap(), tx);
    }

    #[test]
    fn overflowing_cost_is_named() {
        let tx = Transaction {
            amount: Amount(u64::MAX),
            fee: Amount(1),
            ..sample()
        };
        assert_eq!(
            tx.total_cost(),
            Err(TxError::AmountOverflow {
                amount: Amount(u64::MAX),
                fee: Amount(1)
            })
        );
    }
}
