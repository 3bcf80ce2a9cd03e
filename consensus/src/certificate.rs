//! What certificates of both committee protocols share: the ways a quorum
//! of signatures can be wrong, and the signer-set check.

use crate::committee::Committee;
use phalanx_chain::{Hash, ValidatorIndex, ValidatorSignature};
use phalanx_crypto::SigningBytes;
use std::collections::BTreeSet;

/// What is wrong with a certificate (a quorum of signatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("{got} distinct signers, a quorum is {quorum}")]
    TooFewSigners { got: usize, quorum: usize },
    #[error("validator {0} signed twice")]
    DuplicateSigner(ValidatorIndex),
    #[error("validator {0} is not in the committee")]
    UnknownSigner(ValidatorIndex),
    #[error("signature of validator {0} does not verify")]
    BadSignature(ValidatorIndex),
    #[error("its high QC is not the highest one its signers reported")]
    WrongHighQc,
    #[error("a timeout may only carry a TC for an earlier view")]
    NotEarlier,
    #[error("it certifies block {certified}, which is not in the chain below it")]
    NotAnAncestor { certified: Hash },
}

/// Checks a certificate's signer set: members only, each once, at least
/// `needed` of them.
pub fn check_signers(
    committee: &Committee,
    signers: impl Iterator<Item = ValidatorIndex>,
    needed: usize,
) -> Result<(), CertError> {
    let mut seen = BTreeSet::new();
    for signer in signers {
        if committee.key(signer).is_none() {
            return Err(CertError::UnknownSigner(signer));
        }
        if !seen.insert(signer) {
            return Err(CertError::DuplicateSigner(signer));
        }
    }
    if seen.len() < needed {
        return Err(CertError::TooFewSigners {
            got: seen.len(),
            quorum: needed,
        });
    }
    Ok(())
}

/// Checks each signature of a certificate over `bytes` against its
/// signer's key.
pub fn verify_signatures(
    committee: &Committee,
    bytes: &SigningBytes,
    signatures: &[ValidatorSignature],
) -> Result<(), CertError> {
    for s in signatures {
        let key = committee
            .key(s.validator)
            .ok_or(CertError::UnknownSigner(s.validator))?;
        key.verify(bytes, &s.signature)
            .map_err(|_| CertError::BadSignature(s.validator))?;
    }
    Ok(())
}
