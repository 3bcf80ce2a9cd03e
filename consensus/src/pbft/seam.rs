//! PBFT on the protocol seam: [`Pbft`] wraps a [`Replica`] and answers the
//! seam's questions for it (verification, message kinds, safety data, and
//! the commit certificates that prove fetched blocks final).

use super::messages::{
    MAX_MESSAGE_BYTES, MessageError, Payload, SignedMessage, Verified, is_genesis_cert,
    message_view, verify_decoded, verify_header_cert, verify_message,
};
use super::replica::{Config, Input as ReplicaInput, Replica, Timer};
use crate::bft::{self, BftMessage};
use crate::catchup::{self, short};
use crate::committee::Committee;
use crate::ledger::Ledger;
use crate::protocol::{
    Channel, Effect, Evidence, Fault, Input, ProofError, Protocol, RejectReason, Setup, SetupError,
    Status,
};
use crate::types::{Byzantine, TimeMs};
use phalanx_chain::encoding;
use phalanx_chain::{Block, ConsensusKind, Genesis, Hash, Height, Justification, ValidatorIndex};

/// Safety data: a P-set and checkpoint within a view change, the last
/// view change, a plan and per-height records.
const MAX_SAFETY_BYTES: usize = MAX_MESSAGE_BYTES;

/// The behaviours a PBFT replica has.
pub const BEHAVIOURS: [Byzantine; 7] = [
    Byzantine::Silent,
    Byzantine::Equivocate,
    Byzantine::DoubleVote,
    Byzantine::InvalidSignature,
    Byzantine::SkipHeight,
    Byzantine::Reorder,
    Byzantine::Withhold,
];

/// A verified PBFT message: a signed consensus message, or catch-up
/// traffic from a member.
pub type Message = BftMessage<Verified<SignedMessage>>;

/// A PBFT replica on the protocol seam.
#[derive(Debug)]
pub struct Pbft {
    replica: Replica,
    me: ValidatorIndex,
}

impl Pbft {
    /// The replica inside (for tests and inspection).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

/// The view and height two messages are about, and whether they are of a
/// kind two of which from one author in one view and height conflict.
fn conflict_key(m: &SignedMessage) -> Option<(u8, u64, Height, Hash)> {
    match &m.payload {
        Payload::PrePrepare(p) => Some((0, p.view.0, p.block.header().height, p.block.hash())),
        Payload::Prepare(v) => Some((1, v.view.0, v.height, v.block)),
        Payload::Commit(v) => Some((2, v.view.0, v.height, v.block)),
        _ => None,
    }
}

impl Protocol for Pbft {
    type Context = Committee;
    type Message = Message;
    type Timer = Timer;
    type Rejection = MessageError;

    const KIND: ConsensusKind = ConsensusKind::Pbft;
    const SAFETY_KEY: &'static [u8] = b"pbft/safety";

    fn context(genesis: &Genesis, unsafe_quorum: Option<usize>) -> Result<Committee, SetupError> {
        crate::committee_for::<Pbft>(genesis, unsafe_quorum)
    }

    fn new(committee: &Committee, setup: Setup, committed: Block) -> Result<Self, SetupError> {
        let me = committee
            .index_of(&setup.key.public())
            .ok_or(SetupError::NotAValidator)?;
        let t = setup.tuning;
        crate::check_behaviour(Self::KIND, t.byzantine, &BEHAVIOURS)?;
        let config = Config {
            base_timeout_ms: t.base_timeout_ms,
            timeout_factor: t.timeout_factor,
            max_timeout_ms: t.max_timeout_ms,
            checkpoint_interval: t.checkpoint_interval.max(1),
            watermark_window: t
                .watermark_window
                .clamp(1, super::messages::MAX_CERTIFIED as u64),
            max_in_flight: t.max_in_flight.max(1),
            forward: t.forward,
            byzantine: t.byzantine,
            max_batch_delay_ms: t.max_batch_delay_ms,
            empty_block_delay_ms: t.empty_block_delay_ms,
            unsafe_view_change: t.unsafe_view_change,
        };
        let replica = Replica::new(committee.clone(), me, setup.key, config, committed);
        Ok(Pbft { replica, me })
    }

    fn verify(
        committee: &Committee,
        sender: Option<ValidatorIndex>,
        channel: Channel,
        bytes: &[u8],
    ) -> Result<Message, MessageError> {
        bft::verify(
            sender,
            channel,
            bytes,
            |b| verify_message(b, committee),
            MessageError::SenderNotAMember,
        )
    }

    fn reject_reason(rejection: &MessageError) -> RejectReason {
        match rejection {
            MessageError::Decode(_) => RejectReason::Undecodable,
            MessageError::UnknownAuthor { .. } | MessageError::SenderNotAMember => {
                RejectReason::NotAMember
            }
            MessageError::BadSignature { .. } => RejectReason::BadSignature,
            MessageError::BadCertificate { .. } => RejectReason::BadCertificate,
            MessageError::NotPrimary { .. } => RejectReason::NotLeader,
            MessageError::Malformed { .. } => RejectReason::Malformed,
        }
    }

    fn message_kind(message: &Message) -> &'static str {
        message.kind(|m| m.get().kind())
    }

    /// A checkpoint at height h shows its author executed h.
    fn finalized_height_hint(message: &Message) -> Option<Height> {
        match message {
            BftMessage::Consensus(m) => match &m.get().payload {
                Payload::Checkpoint(c) => Some(c.height),
                _ => None,
            },
            BftMessage::Sync { .. } => None,
        }
    }

    fn handle(
        &mut self,
        input: Input<Message, Timer>,
        now: TimeMs,
        ledger: &mut dyn Ledger,
    ) -> Result<Vec<Effect<Timer>>, Fault> {
        let replica = &mut self.replica;
        bft::handle(self.me, input, MAX_SAFETY_BYTES, |input: ReplicaInput| {
            let effects = replica.handle(input, now, ledger);
            (effects, replica.take_fault())
        })
    }

    fn status(&self) -> Status {
        Status {
            view: self.replica.view().0,
            phase: if self.replica.changing_view() {
                "view-change"
            } else {
                "normal"
            },
            unchecked_drops: 0,
            view_timeout_ms: Some(self.replica.view_timeout_ms()),
        }
    }

    /// Each block carries the commit certificate of an ancestor: a
    /// certificate for a block of the run (or the head) proves that block,
    /// and so every block below it, final.
    fn prove_final(
        committee: &Committee,
        head: &Block,
        blocks: &[Block],
    ) -> Result<usize, ProofError> {
        let mut parent = head.hash();
        let mut index = std::collections::HashMap::new();
        index.insert(
            head.hash(),
            (0usize, head.header().height, head.header().parent),
        );
        let mut proved = 0;
        for (i, block) in blocks.iter().enumerate() {
            let height = block.header().height;
            let hash = block.hash();
            if block.header().parent != parent || height.0 != head.header().height.0 + i as u64 + 1
            {
                return Err(ProofError::NotLinked {
                    height,
                    hash,
                    expected_parent: parent,
                });
            }
            let Justification::Bft { parent_cert, .. } = &block.header().justification else {
                return Err(ProofError::WrongJustification { height, hash });
            };
            if !is_genesis_cert(committee, parent_cert)
                && let Some((proves, h, p)) = index.get(&parent_cert.block).copied()
            {
                check_cert(committee, block, parent_cert, h, p)?;
                proved = proved.max(proves);
            }
            index.insert(hash, (i + 1, height, block.header().parent));
            parent = hash;
        }
        Ok(proved)
    }

    fn check_finalized(
        committee: &Committee,
        block: &Block,
        lookup: &dyn Fn(&Hash) -> Option<Block>,
    ) -> Result<(), ProofError> {
        let height = block.header().height;
        let hash = block.hash();
        let Justification::Bft { parent_cert, .. } = &block.header().justification else {
            return Err(ProofError::WrongJustification { height, hash });
        };
        if is_genesis_cert(committee, parent_cert) {
            return Ok(());
        }
        let certified = lookup(&parent_cert.block)
            .filter(|b| b.header().height < height)
            .ok_or(ProofError::BadCertificate {
                height,
                hash,
                view: parent_cert.view,
                reason: crate::certificate::CertError::NotAnAncestor {
                    certified: parent_cert.block,
                },
            })?;
        check_cert(
            committee,
            block,
            parent_cert,
            certified.header().height,
            certified.header().parent,
        )
    }

    /// Two validly signed pre-prepares, prepares or commits by one author
    /// for one view and height that differ.
    fn check_evidence(committee: &Committee, evidence: &Evidence) -> bool {
        let decode =
            |bytes: &[u8]| encoding::decode::<SignedMessage>(bytes, MAX_MESSAGE_BYTES).ok();
        let (Some(first), Some(second)) = (decode(&evidence.first), decode(&evidence.second))
        else {
            return false;
        };
        let (Some(a), Some(b)) = (conflict_key(&first), conflict_key(&second)) else {
            return false;
        };
        let signed = |m: &SignedMessage| verify_decoded(m.clone(), committee).is_ok();
        first.author == evidence.culprit
            && first.author == second.author
            && (a.0, a.1, a.2) == (b.0, b.1, b.2)
            && first.payload != second.payload
            && signed(&first)
            && signed(&second)
    }

    fn describe(channel: Channel, bytes: &[u8]) -> String {
        match channel {
            Channel::Consensus => match encoding::decode::<SignedMessage>(bytes, MAX_MESSAGE_BYTES)
            {
                Ok(m) => describe_message(&m),
                Err(e) => format!("undecodable ({e})"),
            },
            Channel::Sync => catchup::describe(bytes),
        }
    }
}

fn check_cert(
    committee: &Committee,
    block: &Block,
    cert: &phalanx_chain::BftCertificate,
    height: Height,
    parent: Hash,
) -> Result<(), ProofError> {
    verify_header_cert(committee, cert, height, parent).map_err(|e| match e {
        MessageError::BadCertificate { reason, .. } => ProofError::BadCertificate {
            height: block.header().height,
            hash: block.hash(),
            view: cert.view,
            reason,
        },
        _ => ProofError::CertifiesAnotherBlock {
            height: block.header().height,
            hash: block.hash(),
        },
    })
}

fn describe_message(m: &SignedMessage) -> String {
    let view = message_view(m);
    match &m.payload {
        Payload::PrePrepare(p) => format!(
            "pre-prepare by {} view {view} height {} block {} on {}",
            m.author,
            p.block.header().height,
            short(&p.block.hash()),
            short(&p.block.header().parent)
        ),
        Payload::Prepare(v) => format!(
            "prepare by {} view {view} height {} block {}",
            m.author,
            v.height,
            short(&v.block)
        ),
        Payload::Commit(v) => format!(
            "commit by {} view {view} height {} block {}",
            m.author,
            v.height,
            short(&v.block)
        ),
        Payload::Checkpoint(c) => format!(
            "checkpoint by {} height {} block {}",
            m.author,
            c.height,
            short(&c.block)
        ),
        Payload::ViewChange(vc) => format!(
            "view-change by {} to view {view} checkpoint {} with {} certified",
            m.author,
            vc.checkpoint.checkpoint.height,
            vc.certified.len()
        ),
        Payload::NewView(nv) => format!(
            "new-view by {} view {view} from {} view changes, re-proposing {} up to {}",
            m.author,
            nv.view_changes.len(),
            nv.plan.reproposals.len(),
            nv.plan.end()
        ),
    }
}
