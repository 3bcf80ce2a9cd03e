//! HotStuff messages, what each signature covers, and the one function that
//! turns bytes into a verified message.
//!
//! | message  | signed bytes (after `PHALANX/<KIND>/v1 ‖ len ‖ chain_id`) |
//! |----------|------------------------------------------------------------|
//! | proposal | `HS-PROPOSAL`: block hash (the header carries the view)    |
//! | vote     | `HS-VOTE`: view (u64 LE) ‖ block hash                      |
//! | timeout  | `HS-TIMEOUT`: view (u64 LE) ‖ its high QC's view (u64 LE)  |
//!
//! A proposal also carries its parent's header, unsigned: the block's
//! parent hash binds it, and the view's leader is computed from it.
//!
//! A quorum certificate (QC) is the ledger's [`BftCertificate`]: a view, a
//! block hash and the vote signatures of at least n - f distinct validators.
//! A timeout certificate (TC) gathers n - f timeout signatures for one view
//! with the highest QC among them. A message's own signature is the vote or
//! timeout signature that certificates collect, and a forwarded message keeps
//! its author's signature.

pub use crate::bft::Verified;
use crate::certificate::{CertError, check_signers, verify_signatures};
use crate::committee::Committee;
use crate::types::View;
use phalanx_chain::block::{MAX_BLOCK_BYTES, MAX_HEADER_BYTES};
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::{
    BftCertificate, Block, BlockHeader, Hash, Justification, MAX_VALIDATORS, ValidatorIndex,
};
use phalanx_crypto::{Domain, Keypair, Signature, SigningBytes};
use serde::{Deserialize, Serialize};

/// A quorum certificate.
pub type QuorumCert = BftCertificate;

/// A leader's block for a view, with the timeout certificate that let the
/// view begin when the previous view produced no QC, and the header of the
/// block's parent: who leads a view depends on it ([`super::leader`]), so
/// that anyone can check the author from the proposal alone. The header is
/// not signed; the block's parent hash binds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub block: Block,
    pub timeout_cert: Option<TimeoutCert>,
    pub parent_header: BlockHeader,
}

/// A vote for a block in a view, sent to the next view's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub view: View,
    pub block: Hash,
}

/// "View `view` made no progress for me; my highest QC is `high_qc`."
/// It also carries the sender's highest TC, unsigned (a TC proves itself),
/// so that replicas that missed the timeouts forming it still move on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    pub view: View,
    pub high_qc: QuorumCert,
    pub high_tc: Option<TimeoutCert>,
}

/// One validator's timeout signature in a TC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutSignature {
    pub validator: ValidatorIndex,
    pub high_qc_view: View,
    pub signature: Signature,
}

/// n - f timeouts for one view, and the highest QC they reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutCert {
    pub view: View,
    pub high_qc: QuorumCert,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_VALIDATORS>")]
    pub signatures: Vec<TimeoutSignature>,
}

/// What a validator says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    Proposal(Box<Proposal>),
    Vote(Vote),
    Timeout(Box<Timeout>),
}

/// A payload, its author and the author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    pub author: ValidatorIndex,
    pub payload: Payload,
    pub signature: Signature,
}

/// The largest encoded consensus message: a full block, a full TC and a
/// parent header.
pub const MAX_MESSAGE_BYTES: usize =
    MAX_BLOCK_BYTES + MAX_HEADER_BYTES + 2 * MAX_VALIDATORS * 80 + 4096;

impl Verified<SignedMessage> {
    /// For messages this replica signed itself.
    pub(crate) fn own(value: SignedMessage) -> Verified<SignedMessage> {
        let id = value.id();
        Verified::new(value, id)
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    #[error("author {author} is not in the committee")]
    UnknownAuthor { author: ValidatorIndex },
    #[error("signature of validator {author} does not verify")]
    BadSignature { author: ValidatorIndex },
    #[error("proposal for view {view} from {author}, whose leader is {leader}")]
    NotLeader {
        view: View,
        author: ValidatorIndex,
        leader: ValidatorIndex,
    },
    #[error(
        "proposal's block is not a BFT block whose parent certificate and parent header name its parent"
    )]
    MalformedBlock,
    #[error("certificate for view {view}: {reason}")]
    BadCertificate { view: View, reason: CertError },
    #[error("catch-up traffic from a peer that is not a validator")]
    SenderNotAMember,
}

pub(crate) fn vote_bytes(committee: &Committee, view: View, block: &Hash) -> SigningBytes {
    Domain::HotStuffVote
        .begin(committee.chain_id())
        .u64_le(view.0)
        .bytes(block.as_bytes())
        .finish()
}

pub(crate) fn timeout_bytes(committee: &Committee, view: View, high_qc_view: View) -> SigningBytes {
    Domain::HotStuffTimeout
        .begin(committee.chain_id())
        .u64_le(view.0)
        .u64_le(high_qc_view.0)
        .finish()
}

pub(crate) fn proposal_bytes(committee: &Committee, block: &Hash) -> SigningBytes {
    Domain::HotStuffProposal
        .begin(committee.chain_id())
        .bytes(block.as_bytes())
        .finish()
}

/// The bytes `author` signs for `payload`.
pub fn signing_bytes(committee: &Committee, payload: &Payload) -> SigningBytes {
    match payload {
        Payload::Proposal(p) => proposal_bytes(committee, &p.block.hash()),
        Payload::Vote(v) => vote_bytes(committee, v.view, &v.block),
        Payload::Timeout(t) => timeout_bytes(committee, t.view, View(t.high_qc.view)),
    }
}

/// Signs `payload` as `author`.
pub fn sign(
    committee: &Committee,
    key: &Keypair,
    author: ValidatorIndex,
    payload: Payload,
) -> SignedMessage {
    let signature = key.sign(&signing_bytes(committee, &payload));
    SignedMessage {
        author,
        payload,
        signature,
    }
}

impl crate::bft::Signed for SignedMessage {
    fn author(&self) -> ValidatorIndex {
        self.author
    }

    fn kind(&self) -> &'static str {
        match &self.payload {
            Payload::Proposal(_) => "proposal",
            Payload::Vote(_) => "vote",
            Payload::Timeout(_) => "timeout",
        }
    }

    fn encode(&self) -> Vec<u8> {
        SignedMessage::encode(self)
    }
}

impl SignedMessage {
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// A content id for deduplication (BLAKE3 of the encoding).
    pub fn id(&self) -> Hash {
        encoding::digest(self)
    }

    /// The view this message belongs to.
    pub fn view(&self) -> View {
        match &self.payload {
            Payload::Proposal(p) => block_view(&p.block).unwrap_or_default(),
            Payload::Vote(v) => v.view,
            Payload::Timeout(t) => t.view,
        }
    }
}

/// A block's view: the one in its BFT justification (0 for genesis).
pub fn block_view(block: &Block) -> Option<View> {
    match &block.header().justification {
        Justification::Bft { view, .. } => Some(View(*view)),
        Justification::Genesis => Some(View(0)),
        Justification::ProofOfWork(_) => None,
    }
}

/// A block's parent certificate (`None` for genesis and non-BFT blocks).
pub fn parent_cert(block: &Block) -> Option<&QuorumCert> {
    match &block.header().justification {
        Justification::Bft { parent_cert, .. } => Some(parent_cert),
        _ => None,
    }
}

/// Decodes and checks a consensus message: size, encoding, committee
/// membership, the author's signature, and every certificate inside.
pub fn verify_message(
    bytes: &[u8],
    committee: &Committee,
) -> Result<Verified<SignedMessage>, MessageError> {
    let message: SignedMessage = encoding::decode(bytes, MAX_MESSAGE_BYTES)?;
    // `decode` took only the canonical encoding: these bytes are it.
    check(message, Hash::digest(bytes), committee).map(|m| m.with_wire(bytes))
}

/// [`verify_message`] for a message already decoded (for in-process
/// transports that skip the bytes).
pub fn verify_decoded(
    message: SignedMessage,
    committee: &Committee,
) -> Result<Verified<SignedMessage>, MessageError> {
    let id = message.id();
    check(message, id, committee)
}

/// The checks of [`verify_message`] on `message`, whose id is `id`.
fn check(
    message: SignedMessage,
    id: Hash,
    committee: &Committee,
) -> Result<Verified<SignedMessage>, MessageError> {
    let author = message.author;
    let key = committee
        .key(author)
        .ok_or(MessageError::UnknownAuthor { author })?;
    match &message.payload {
        Payload::Proposal(p) => check_proposal(committee, author, p)?,
        Payload::Vote(_) => {}
        Payload::Timeout(t) => {
            verify_qc(committee, &t.high_qc)?;
            if let Some(tc) = &t.high_tc {
                if tc.view >= t.view {
                    return Err(MessageError::BadCertificate {
                        view: tc.view,
                        reason: CertError::NotEarlier,
                    });
                }
                verify_tc(committee, tc)?;
            }
        }
    }
    key.verify(
        &signing_bytes(committee, &message.payload),
        &message.signature,
    )
    .map_err(|_| MessageError::BadSignature { author })?;
    Ok(Verified::new(message, id))
}

fn check_proposal(
    committee: &Committee,
    author: ValidatorIndex,
    p: &Proposal,
) -> Result<(), MessageError> {
    let header = p.block.header();
    let Justification::Bft { view, parent_cert } = &header.justification else {
        return Err(MessageError::MalformedBlock);
    };
    let view = View(*view);
    if p.parent_header.hash() != header.parent {
        return Err(MessageError::MalformedBlock);
    }
    let leader = super::leader::leader(committee, view, &p.parent_header);
    if author != leader {
        return Err(MessageError::NotLeader {
            view,
            author,
            leader,
        });
    }
    let proposer_is_author = committee
        .key(author)
        .is_some_and(|k| phalanx_chain::Address::from(*k) == header.proposer);
    if parent_cert.block != header.parent || !proposer_is_author || View(parent_cert.view) >= view {
        return Err(MessageError::MalformedBlock);
    }
    verify_qc(committee, parent_cert)?;
    if let Some(tc) = &p.timeout_cert {
        verify_tc(committee, tc)?;
    }
    Ok(())
}

/// Checks a QC: the genesis QC (view 0 over block 0, no signatures), or at
/// least a quorum of distinct members' valid vote signatures.
pub fn verify_qc(committee: &Committee, qc: &QuorumCert) -> Result<(), MessageError> {
    let view = View(qc.view);
    if is_genesis_qc(committee, qc) {
        return Ok(());
    }
    let bad = |reason| MessageError::BadCertificate { view, reason };
    let message = vote_bytes(committee, view, &qc.block);
    check_signers(
        committee,
        qc.signatures.iter().map(|s| s.validator),
        committee.quorum(),
    )
    .map_err(bad)?;
    verify_signatures(committee, &message, &qc.signatures).map_err(bad)
}

/// The QC every chain starts from.
pub fn genesis_qc(committee: &Committee) -> QuorumCert {
    BftCertificate {
        view: 0,
        block: committee.genesis_block(),
        signatures: Vec::new(),
    }
}

fn is_genesis_qc(committee: &Committee, qc: &QuorumCert) -> bool {
    qc.view == 0 && qc.block == committee.genesis_block() && qc.signatures.is_empty()
}

/// Checks a TC: a quorum of distinct members' timeout signatures for its
/// view, and a valid high QC that is the highest its signers reported.
pub fn verify_tc(committee: &Committee, tc: &TimeoutCert) -> Result<(), MessageError> {
    let bad = |reason| MessageError::BadCertificate {
        view: tc.view,
        reason,
    };
    check_signers(
        committee,
        tc.signatures.iter().map(|s| s.validator),
        committee.quorum(),
    )
    .map_err(bad)?;
    let highest = tc.signatures.iter().map(|s| s.high_qc_view).max();
    if highest != Some(View(tc.high_qc.view)) {
        return Err(bad(CertError::WrongHighQc));
    }
    for s in &tc.signatures {
        let key = committee
            .key(s.validator)
            .ok_or(bad(CertError::UnknownSigner(s.validator)))?;
        key.verify(
            &timeout_bytes(committee, tc.view, s.high_qc_view),
            &s.signature,
        )
        .map_err(|_| bad(CertError::BadSignature(s.validator)))?;
    }
    verify_qc(committee, &tc.high_qc)
}
