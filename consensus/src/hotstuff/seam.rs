//! HotStuff on the protocol seam: [`HotStuff`] wraps a [`Replica`] and
//! answers the seam's questions (verification, message kinds, safety data,
//! the three-chain that proves fetched blocks final) for it.

use super::io::Input as ReplicaInput;
use super::messages::{
    MAX_MESSAGE_BYTES, MessageError, Payload, SignedMessage, Verified, block_view, parent_cert,
    verify_decoded, verify_message, verify_qc,
};
use super::{Config, Replica, Timer};
use crate::bft::{self, BftMessage, Signed};
use crate::catchup::{self, short};
use crate::committee::Committee;
use crate::ledger::Ledger;
use crate::protocol::{
    Channel, Effect, Evidence, Fault, Input, ProofError, Protocol, RejectReason, Setup, SetupError,
    Status,
};
use crate::types::{Byzantine, TimeMs, View};
use phalanx_chain::encoding;
use phalanx_chain::{Block, ConsensusKind, Genesis, Hash, Height, ValidatorIndex};

/// Safety data: two certificates and two messages, each within a message.
const MAX_SAFETY_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

/// A verified HotStuff message: a signed consensus message, or catch-up
/// traffic from a member.
pub type Message = BftMessage<Verified<SignedMessage>>;

/// A HotStuff replica on the protocol seam.
#[derive(Debug)]
pub struct HotStuff {
    replica: Replica,
    me: ValidatorIndex,
}

impl HotStuff {
    /// The replica inside (for tests and inspection).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

/// The behaviours a HotStuff replica has.
pub const BEHAVIOURS: [Byzantine; 5] = [
    Byzantine::Silent,
    Byzantine::Equivocate,
    Byzantine::DoubleVote,
    Byzantine::InvalidSignature,
    Byzantine::StaleQc,
];

impl Protocol for HotStuff {
    type Context = Committee;
    type Message = Message;
    type Timer = Timer;
    type Rejection = MessageError;

    const KIND: ConsensusKind = ConsensusKind::Hotstuff;
    const SAFETY_KEY: &'static [u8] = b"hotstuff/safety";

    fn context(genesis: &Genesis, unsafe_quorum: Option<usize>) -> Result<Committee, SetupError> {
        crate::committee_for::<HotStuff>(genesis, unsafe_quorum)
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
            forward: t.forward,
            byzantine: t.byzantine,
            max_batch_delay_ms: t.max_batch_delay_ms,
            empty_block_delay_ms: t.empty_block_delay_ms,
            ..Config::default()
        };
        let replica = Replica::new(committee.clone(), me, setup.key, config, committed);
        Ok(HotStuff { replica, me })
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
            MessageError::NotLeader { .. } => RejectReason::NotLeader,
            MessageError::MalformedBlock => RejectReason::Malformed,
        }
    }

    fn message_kind(message: &Message) -> &'static str {
        message.kind(|m| m.get().kind())
    }

    /// A proposal at height h shows h - 3 final: its three-chain.
    fn finalized_height_hint(message: &Message) -> Option<Height> {
        match message {
            BftMessage::Consensus(m) => match &m.get().payload {
                Payload::Proposal(p) => Some(Height(p.block.header().height.0.saturating_sub(3))),
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
            phase: if self.replica.timed_out() {
                "timed-out"
            } else {
                "normal"
            },
            unchecked_drops: 0,
            view_timeout_ms: Some(self.replica.view_timeout_ms()),
        }
    }

    /// Block i is final if blocks i+1 and i+2 follow it in consecutive
    /// views and block i+3 certifies block i+2: the three-chain the replica
    /// commits by.
    fn prove_final(
        committee: &Committee,
        head: &Block,
        blocks: &[Block],
    ) -> Result<usize, ProofError> {
        let mut parent = head.hash();
        let mut views = Vec::with_capacity(blocks.len());
        for block in blocks {
            check_link(
                block,
                parent,
                head.header().height.0 + views.len() as u64 + 1,
            )?;
            check_parent_cert(committee, block)?;
            let view = block_view(block).unwrap_or_default();
            let cert_view = parent_cert(block).map_or(View(0), |c| View(c.view));
            views.push((view, cert_view));
            parent = block.hash();
        }
        let mut proved = 0;
        for i in 0..blocks.len() {
            let (Some((v0, _)), Some((v1, c1)), Some((v2, c2)), Some((_, c3))) = (
                views.get(i),
                views.get(i + 1),
                views.get(i + 2),
                views.get(i + 3),
            ) else {
                break;
            };
            if *c1 == *v0 && *c2 == *v1 && v1.0 == v0.0 + 1 && v2.0 == v1.0 + 1 && *c3 == *v2 {
                proved = i + 1;
            }
        }
        Ok(proved)
    }

    fn check_finalized(
        committee: &Committee,
        block: &Block,
        _lookup: &dyn Fn(&Hash) -> Option<Block>,
    ) -> Result<(), ProofError> {
        check_parent_cert(committee, block)
    }

    /// Two validly signed messages by one author, of one kind and view,
    /// that differ.
    fn check_evidence(committee: &Committee, evidence: &Evidence) -> bool {
        let decode =
            |bytes: &[u8]| encoding::decode::<SignedMessage>(bytes, MAX_MESSAGE_BYTES).ok();
        let (Some(first), Some(second)) = (decode(&evidence.first), decode(&evidence.second))
        else {
            return false;
        };
        let same_kind =
            std::mem::discriminant(&first.payload) == std::mem::discriminant(&second.payload);
        let signed = |m: &SignedMessage| verify_decoded(m.clone(), committee).is_ok();
        first.author == evidence.culprit
            && first.author == second.author
            && first.view() == second.view()
            && same_kind
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

fn check_link(block: &Block, parent: Hash, height: u64) -> Result<(), ProofError> {
    if block.header().parent != parent || block.header().height.0 != height {
        return Err(ProofError::NotLinked {
            height: block.header().height,
            hash: block.hash(),
            expected_parent: parent,
        });
    }
    Ok(())
}

/// A block's certificate is a QC over its parent, from an earlier view.
fn check_parent_cert(committee: &Committee, block: &Block) -> Result<(), ProofError> {
    let height = block.header().height;
    let hash = block.hash();
    let (Some(cert), Some(view)) = (parent_cert(block), block_view(block)) else {
        return Err(ProofError::WrongJustification { height, hash });
    };
    if cert.block != block.header().parent || View(cert.view) >= view {
        return Err(ProofError::CertifiesAnotherBlock { height, hash });
    }
    verify_qc(committee, cert).map_err(|e| match e {
        MessageError::BadCertificate { view, reason } => ProofError::BadCertificate {
            height,
            hash,
            view: view.0,
            reason,
        },
        _ => ProofError::WrongJustification { height, hash },
    })
}

fn describe_message(m: &SignedMessage) -> String {
    match &m.payload {
        Payload::Proposal(p) => {
            let cert = parent_cert(&p.block).map_or(0, |c| c.view);
            format!(
                "proposal by {} view {} block {} height {} on qc v{} {}{}",
                m.author,
                block_view(&p.block).unwrap_or_default(),
                short(&p.block.hash()),
                p.block.header().height,
                cert,
                short(&p.block.header().parent),
                p.timeout_cert
                    .as_ref()
                    .map_or(String::new(), |tc| format!(" with tc v{}", tc.view))
            )
        }
        Payload::Vote(v) => format!(
            "vote by {} view {} block {}",
            m.author,
            v.view,
            short(&v.block)
        ),
        Payload::Timeout(t) => format!(
            "timeout by {} view {} high qc v{}",
            m.author, t.view, t.high_qc.view
        ),
    }
}
