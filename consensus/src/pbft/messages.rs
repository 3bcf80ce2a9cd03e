//! PBFT messages, what each signature covers, the certificates they form,
//! and the one function that turns bytes into a verified message.
//!
//! | message     | signed bytes (after `PHALANX/<KIND>/v1 ‖ len ‖ chain_id`)            |
//! |-------------|-----------------------------------------------------------------------|
//! | pre-prepare | `PBFT-PRE-PREPARE`: view ‖ height ‖ block hash ‖ parent hash          |
//! | prepare     | `PBFT-PREPARE`: view ‖ height ‖ block hash ‖ parent hash              |
//! | commit      | `PBFT-COMMIT`: view ‖ height ‖ block hash ‖ parent hash               |
//! | checkpoint  | `PBFT-CHECKPOINT`: height ‖ block hash ‖ state root                   |
//! | view change | `PBFT-VIEW-CHANGE`: BLAKE3 of the view change's encoding              |
//! | new view    | `PBFT-NEW-VIEW`: BLAKE3 of the new view's encoding                    |
//!
//! Views and heights are u64 little endian. Votes sign the parent hash as
//! well as the block's: a certificate then says where its block sits in the
//! chain without the block itself, which the new primary needs to pick a
//! chain of re-proposals from view changes (see [`super::select`]). A
//! forwarded message keeps its author's signature.

pub use crate::bft::Verified;
use crate::certificate::{CertError, check_signers, verify_signatures};
use crate::committee::Committee;
use crate::types::View;
use phalanx_chain::block::MAX_BLOCK_BYTES;
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::{
    Address, BftCertificate, Block, Hash, Height, Justification, MAX_VALIDATORS, ValidatorIndex,
    ValidatorSignature,
};
use phalanx_crypto::{Domain, Keypair, Signature, SigningBytes};
use serde::{Deserialize, Serialize};

/// Heights a view change may carry certificates for (its P-set), at most:
/// the largest watermark window a replica may be configured with.
pub const MAX_CERTIFIED: usize = 256;
/// The largest encoded consensus message: a pre-prepare carrying a full
/// block, or a new view carrying a quorum of view changes (at n = 31 and a
/// window of 32 heights, about 1 MiB). A node's network refuses messages
/// above its own limit (4 MiB by default) before they get here.
pub const MAX_MESSAGE_BYTES: usize = MAX_BLOCK_BYTES + 16 * 1024 * 1024;

/// The primary's proposal: `block` at its own height, in `view`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    pub view: View,
    pub block: Block,
}

/// A PREPARE or COMMIT: `block` (a child of `parent`) at `height` in `view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vote {
    pub view: View,
    pub height: Height,
    pub block: Hash,
    pub parent: Hash,
}

/// "After executing `block` at `height` my state root is `state_root`."
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    pub height: Height,
    pub block: Hash,
    pub state_root: Hash,
}

/// n - f matching checkpoints: the stable checkpoint. Height 0 (genesis)
/// needs no signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCert {
    pub checkpoint: Checkpoint,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_VALIDATORS>")]
    pub signatures: Vec<ValidatorSignature>,
}

/// PBFT 4.2: prepared(m, v, n, i): the primary's pre-prepare and 2f
/// matching prepares from other replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCert {
    pub vote: Vote,
    /// The primary of `vote.view`'s pre-prepare signature.
    pub preprepare: Signature,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_VALIDATORS>")]
    pub prepares: Vec<ValidatorSignature>,
}

/// n - f matching commits: the block is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCert {
    pub vote: Vote,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_VALIDATORS>")]
    pub commits: Vec<ValidatorSignature>,
}

impl CommitCert {
    /// The form a block header carries (its height and parent are the
    /// certified block's own).
    pub fn to_bft(&self) -> BftCertificate {
        BftCertificate {
            view: self.vote.view.0,
            block: self.vote.block,
            signatures: self.commits.clone(),
        }
    }
}

/// What a view change says about one height above its checkpoint: the
/// block was prepared, or is known final, in `view`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Certified {
    Prepared(PreparedCert),
    Committed(CommitCert),
}

impl Certified {
    pub fn vote(&self) -> &Vote {
        match self {
            Certified::Prepared(c) => &c.vote,
            Certified::Committed(c) => &c.vote,
        }
    }
}

/// PBFT 4.4: a replica that gave up on the view before `view` asks to move
/// to `view`, with its stable checkpoint and what it saw prepared above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    pub view: View,
    pub checkpoint: CheckpointCert,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_CERTIFIED>")]
    pub certified: Vec<Certified>,
}

/// PBFT 4.4: the new primary's proof that `view` may start, and the blocks
/// it must re-propose (`reproposals`, one per height above the highest
/// checkpoint in `view_changes`, in height order), which every replica
/// recomputes from `view_changes` before accepting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    pub view: View,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_VALIDATORS>")]
    pub view_changes: Vec<SignedMessage>,
    pub plan: super::select::Plan,
}

/// What a validator says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    PrePrepare(Box<PrePrepare>),
    Prepare(Vote),
    Commit(Vote),
    Checkpoint(Checkpoint),
    ViewChange(Box<ViewChange>),
    NewView(Box<NewView>),
}

/// A payload, its author and the author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    pub author: ValidatorIndex,
    pub payload: Payload,
    pub signature: Signature,
}

impl crate::bft::Signed for SignedMessage {
    fn author(&self) -> ValidatorIndex {
        self.author
    }

    fn kind(&self) -> &'static str {
        SignedMessage::kind(self)
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

    /// The message's kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match &self.payload {
            Payload::PrePrepare(_) => "pre-prepare",
            Payload::Prepare(_) => "prepare",
            Payload::Commit(_) => "commit",
            Payload::Checkpoint(_) => "checkpoint",
            Payload::ViewChange(_) => "view-change",
            Payload::NewView(_) => "new-view",
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    #[error("author {author} is not in the committee")]
    UnknownAuthor { author: ValidatorIndex },
    #[error("catch-up traffic from a peer that is not a validator")]
    SenderNotAMember,
    #[error("signature of validator {author} does not verify")]
    BadSignature { author: ValidatorIndex },
    #[error("{kind} for view {view} from {author}, whose primary is {primary}")]
    NotPrimary {
        kind: &'static str,
        view: View,
        author: ValidatorIndex,
        primary: ValidatorIndex,
    },
    #[error("malformed {kind}: {reason}")]
    Malformed {
        kind: &'static str,
        reason: &'static str,
    },
    #[error("certificate for height {height} in view {view}: {reason}")]
    BadCertificate {
        height: Height,
        view: View,
        reason: CertError,
    },
}

fn vote_bytes(domain: Domain, committee: &Committee, vote: &Vote) -> SigningBytes {
    domain
        .begin(committee.chain_id())
        .u64_le(vote.view.0)
        .u64_le(vote.height.0)
        .bytes(vote.block.as_bytes())
        .bytes(vote.parent.as_bytes())
        .finish()
}

/// The bytes a primary signs for a pre-prepare of `vote`'s block.
pub fn preprepare_bytes(committee: &Committee, vote: &Vote) -> SigningBytes {
    vote_bytes(Domain::PbftPrePrepare, committee, vote)
}

pub fn prepare_bytes(committee: &Committee, vote: &Vote) -> SigningBytes {
    vote_bytes(Domain::PbftPrepare, committee, vote)
}

pub fn commit_bytes(committee: &Committee, vote: &Vote) -> SigningBytes {
    vote_bytes(Domain::PbftCommit, committee, vote)
}

pub fn checkpoint_bytes(committee: &Committee, checkpoint: &Checkpoint) -> SigningBytes {
    Domain::PbftCheckpoint
        .begin(committee.chain_id())
        .u64_le(checkpoint.height.0)
        .bytes(checkpoint.block.as_bytes())
        .bytes(checkpoint.state_root.as_bytes())
        .finish()
}

fn digest_bytes<T: Serialize>(domain: Domain, committee: &Committee, value: &T) -> SigningBytes {
    let digest = encoding::digest(value);
    domain
        .begin(committee.chain_id())
        .bytes(digest.as_bytes())
        .finish()
}

/// The vote a pre-prepare's signature covers.
pub fn preprepare_vote(p: &PrePrepare) -> Vote {
    Vote {
        view: p.view,
        height: p.block.header().height,
        block: p.block.hash(),
        parent: p.block.header().parent,
    }
}

/// The bytes `author` signs for `payload`.
pub fn signing_bytes(committee: &Committee, payload: &Payload) -> SigningBytes {
    match payload {
        Payload::PrePrepare(p) => preprepare_bytes(committee, &preprepare_vote(p)),
        Payload::Prepare(v) => prepare_bytes(committee, v),
        Payload::Commit(v) => commit_bytes(committee, v),
        Payload::Checkpoint(c) => checkpoint_bytes(committee, c),
        Payload::ViewChange(vc) => digest_bytes(Domain::PbftViewChange, committee, vc.as_ref()),
        Payload::NewView(nv) => digest_bytes(Domain::PbftNewView, committee, nv.as_ref()),
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

/// Decodes and checks a consensus message: size, encoding, committee
/// membership, the author's signature, and every certificate inside except
/// the commit certificate a pre-prepared block carries in its header (that
/// one certifies an ancestor whose height and parent only a replica that
/// holds the chain knows; the replica checks it before accepting the
/// block).
pub fn verify_message(
    bytes: &[u8],
    committee: &Committee,
) -> Result<Verified<SignedMessage>, MessageError> {
    let message: SignedMessage = encoding::decode(bytes, MAX_MESSAGE_BYTES)?;
    // `decode` took only the canonical encoding: these bytes are it.
    check(message, Hash::digest(bytes), committee).map(|m| m.with_wire(bytes))
}

/// [`verify_message`] for a message already decoded.
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
        Payload::PrePrepare(p) => check_preprepare(committee, author, p)?,
        Payload::Prepare(_) | Payload::Commit(_) | Payload::Checkpoint(_) => {}
        Payload::ViewChange(vc) => check_view_change(committee, vc)?,
        Payload::NewView(nv) => check_new_view(committee, author, nv)?,
    }
    key.verify(
        &signing_bytes(committee, &message.payload),
        &message.signature,
    )
    .map_err(|_| MessageError::BadSignature { author })?;
    Ok(Verified::new(message, id))
}

fn malformed(kind: &'static str, reason: &'static str) -> MessageError {
    MessageError::Malformed { kind, reason }
}

/// The block a pre-prepare carries: a BFT block whose proposer is the
/// primary of the view it was first proposed in (an earlier view for a
/// re-proposal), carrying a commit certificate of some ancestor (or the
/// genesis certificate) whose signer set is well formed. The
/// certificate's view says when that ancestor was committed, which may be
/// a later view than the block's (a primary that has not yet noticed a
/// view change executes blocks committed in the new view).
fn check_preprepare(
    committee: &Committee,
    author: ValidatorIndex,
    p: &PrePrepare,
) -> Result<(), MessageError> {
    const KIND: &str = "pre-prepare";
    let primary = committee.leader(p.view);
    if author != primary {
        return Err(MessageError::NotPrimary {
            kind: KIND,
            view: p.view,
            author,
            primary,
        });
    }
    let header = p.block.header();
    let Justification::Bft { view, parent_cert } = &header.justification else {
        return Err(malformed(KIND, "the block is not a BFT block"));
    };
    let proposed_in = View(*view);
    if proposed_in > p.view {
        return Err(malformed(KIND, "the block's view is after the message's"));
    }
    let proposer = committee
        .key(committee.leader(proposed_in))
        .map(|k| Address::from(*k));
    if proposer != Some(header.proposer) {
        return Err(malformed(
            KIND,
            "the block's proposer is not the primary of its view",
        ));
    }
    if !is_genesis_cert(committee, parent_cert) {
        check_signers(
            committee,
            parent_cert.signatures.iter().map(|s| s.validator),
            committee.quorum(),
        )
        .map_err(|reason| MessageError::BadCertificate {
            height: header.height,
            view: View(parent_cert.view),
            reason,
        })?;
    }
    Ok(())
}

/// The certificate every chain starts from: view 0 over block 0.
pub fn genesis_cert(committee: &Committee) -> BftCertificate {
    BftCertificate {
        view: 0,
        block: committee.genesis_block(),
        signatures: Vec::new(),
    }
}

pub fn is_genesis_cert(committee: &Committee, cert: &BftCertificate) -> bool {
    cert.view == 0 && cert.block == committee.genesis_block() && cert.signatures.is_empty()
}

/// The stable checkpoint every chain starts with: genesis.
pub fn genesis_checkpoint(committee: &Committee, genesis: &Block) -> CheckpointCert {
    CheckpointCert {
        checkpoint: Checkpoint {
            height: Height(0),
            block: committee.genesis_block(),
            state_root: genesis.header().state_root,
        },
        signatures: Vec::new(),
    }
}

fn cert_error(vote: &Vote, reason: CertError) -> MessageError {
    MessageError::BadCertificate {
        height: vote.height,
        view: vote.view,
        reason,
    }
}

/// A prepared certificate: the primary's pre-prepare signature and
/// quorum - 1 prepares from distinct replicas other than the primary.
pub fn verify_prepared(committee: &Committee, cert: &PreparedCert) -> Result<(), MessageError> {
    let vote = &cert.vote;
    let primary = committee.leader(vote.view);
    let bad = |reason| cert_error(vote, reason);
    if cert.prepares.iter().any(|s| s.validator == primary) {
        return Err(bad(CertError::DuplicateSigner(primary)));
    }
    let needed = committee.quorum().saturating_sub(1);
    check_signers(committee, cert.prepares.iter().map(|s| s.validator), needed).map_err(bad)?;
    let key = committee
        .key(primary)
        .ok_or(bad(CertError::UnknownSigner(primary)))?;
    key.verify(&preprepare_bytes(committee, vote), &cert.preprepare)
        .map_err(|_| bad(CertError::BadSignature(primary)))?;
    verify_signatures(committee, &prepare_bytes(committee, vote), &cert.prepares).map_err(bad)
}

/// A commit certificate: a quorum of distinct commits.
pub fn verify_commit(committee: &Committee, cert: &CommitCert) -> Result<(), MessageError> {
    verify_commit_except(committee, cert, |_| false)
}

/// [`verify_commit`], not checking again the signatures `known` says were
/// verified already (as the commit messages they came in).
pub fn verify_commit_except(
    committee: &Committee,
    cert: &CommitCert,
    known: impl Fn(&ValidatorSignature) -> bool,
) -> Result<(), MessageError> {
    let bad = |reason| cert_error(&cert.vote, reason);
    check_signers(
        committee,
        cert.commits.iter().map(|s| s.validator),
        committee.quorum(),
    )
    .map_err(bad)?;
    let unknown: Vec<ValidatorSignature> =
        cert.commits.iter().filter(|s| !known(s)).cloned().collect();
    verify_signatures(committee, &commit_bytes(committee, &cert.vote), &unknown).map_err(bad)
}

/// A block header's commit certificate, given the certified block's
/// height and parent (the genesis certificate needs neither).
pub fn verify_header_cert(
    committee: &Committee,
    cert: &BftCertificate,
    height: Height,
    parent: Hash,
) -> Result<(), MessageError> {
    if is_genesis_cert(committee, cert) {
        return Ok(());
    }
    verify_commit(
        committee,
        &CommitCert {
            vote: Vote {
                view: View(cert.view),
                height,
                block: cert.block,
                parent,
            },
            commits: cert.signatures.clone(),
        },
    )
}

/// A stable checkpoint certificate (genesis needs no signatures).
pub fn verify_checkpoint(committee: &Committee, cert: &CheckpointCert) -> Result<(), MessageError> {
    let c = &cert.checkpoint;
    if c.height == Height(0) {
        return if c.block == committee.genesis_block() && cert.signatures.is_empty() {
            Ok(())
        } else {
            Err(malformed(
                "checkpoint",
                "a height-0 checkpoint is not genesis",
            ))
        };
    }
    let bad = |reason| MessageError::BadCertificate {
        height: c.height,
        view: View(0),
        reason,
    };
    check_signers(
        committee,
        cert.signatures.iter().map(|s| s.validator),
        committee.quorum(),
    )
    .map_err(bad)?;
    verify_signatures(committee, &checkpoint_bytes(committee, c), &cert.signatures).map_err(bad)
}

/// A view change: its checkpoint certificate and one valid certificate per
/// height, each above the checkpoint and earlier than the new view.
fn check_view_change(committee: &Committee, vc: &ViewChange) -> Result<(), MessageError> {
    const KIND: &str = "view-change";
    verify_checkpoint(committee, &vc.checkpoint)?;
    let base = vc.checkpoint.checkpoint.height;
    let mut last = base;
    for certified in &vc.certified {
        let vote = certified.vote();
        if vote.height <= last {
            return Err(malformed(
                KIND,
                "certificates not above the checkpoint in height order",
            ));
        }
        if vote.view >= vc.view {
            return Err(malformed(KIND, "a certificate from the new view or later"));
        }
        last = vote.height;
        match certified {
            Certified::Prepared(c) => verify_prepared(committee, c)?,
            Certified::Committed(c) => verify_commit(committee, c)?,
        }
    }
    Ok(())
}

/// A new view: from the new view's primary; a quorum of view changes for
/// that view from distinct replicas, each valid; and the plan every
/// replica computes from them.
fn check_new_view(
    committee: &Committee,
    author: ValidatorIndex,
    nv: &NewView,
) -> Result<(), MessageError> {
    const KIND: &str = "new-view";
    let primary = committee.leader(nv.view);
    if author != primary {
        return Err(MessageError::NotPrimary {
            kind: KIND,
            view: nv.view,
            author,
            primary,
        });
    }
    let mut view_changes = Vec::with_capacity(nv.view_changes.len());
    for m in &nv.view_changes {
        let Payload::ViewChange(vc) = &m.payload else {
            return Err(malformed(
                KIND,
                "it carries a message that is not a view change",
            ));
        };
        if vc.view != nv.view {
            return Err(malformed(KIND, "it carries a view change for another view"));
        }
        verify_decoded(m.clone(), committee)?;
        view_changes.push((m.author, vc.as_ref()));
    }
    check_signers(
        committee,
        view_changes.iter().map(|(a, _)| *a),
        committee.quorum(),
    )
    .map_err(|reason| MessageError::BadCertificate {
        height: Height(0),
        view: nv.view,
        reason,
    })?;
    Ok(())
}

/// The view this message belongs to (a checkpoint's is 0).
pub fn message_view(m: &SignedMessage) -> View {
    match &m.payload {
        Payload::PrePrepare(p) => p.view,
        Payload::Prepare(v) | Payload::Commit(v) => v.view,
        Payload::Checkpoint(_) => View(0),
        Payload::ViewChange(vc) => vc.view,
        Payload::NewView(nv) => nv.view,
    }
}
