//! The HotStuff [`Replica`] behind the simulator's [`Protocol`] seam.
//!
//! Consensus bytes become messages only through `verify_message` (size,
//! decoding, membership, signatures, embedded certificates) and sync bytes
//! through `decode_sync`, as in a node. Safety data is persisted as its
//! postcard encoding and read back on restart.

use super::ledger::SimLedger;
use super::protocol::{
    Action, Booted, Channel, EvidenceReport, NodeSetup, Origin, Outgoing, Protocol, Rejected,
};
use super::scenario::TimeMs;
use phalanx_chain::encoding;
use phalanx_chain::{Block, Genesis, Hash, ValidatorIndex};
use phalanx_consensus::hotstuff::{
    Config, Effect, Evidence, Input, MAX_MESSAGE_BYTES, MessageError, Payload, Replica, SafetyData,
    SignedMessage, SyncMessage, Timer, Verified, block_view, decode_sync, parent_cert,
    verify_decoded, verify_message, verify_qc,
};
use phalanx_consensus::{Committee, View};
use std::collections::HashMap;

/// Safety data: two certificates and two messages, each within a message.
const MAX_SAFETY_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

/// Verification results kept per run, at most.
const VERIFY_CACHE_ENTRIES: usize = 65_536;

/// What every HotStuff replica of a run shares.
#[derive(Debug)]
pub struct Shared {
    committee: Committee,
    cache: Option<HashMap<Hash, Result<Verified<SignedMessage>, MessageError>>>,
}

impl Shared {
    /// `verify_message`, answered from the cache for bytes seen before
    /// (verification is a pure function of the bytes and the committee).
    fn verify(&mut self, bytes: &[u8]) -> Result<Verified<SignedMessage>, MessageError> {
        let Some(cache) = &mut self.cache else {
            return verify_message(bytes, &self.committee);
        };
        let key = Hash::digest(bytes);
        if let Some(result) = cache.get(&key) {
            return result.clone();
        }
        let result = verify_message(bytes, &self.committee);
        if cache.len() >= VERIFY_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, result.clone());
        result
    }
}

/// One HotStuff replica in the simulator.
#[derive(Debug)]
pub struct HotStuff {
    replica: Replica,
    me: ValidatorIndex,
}

fn rejection(error: &MessageError) -> Rejected {
    Rejected(match error {
        MessageError::Decode(_) => "undecodable",
        MessageError::UnknownAuthor { .. } | MessageError::SenderNotAMember => "unknown-author",
        MessageError::BadSignature { .. } => "bad-signature",
        MessageError::NotLeader { .. } => "not-leader",
        MessageError::MalformedBlock => "malformed-block",
        MessageError::BadCertificate { .. } => "bad-certificate",
    })
}

impl HotStuff {
    fn handle(
        &mut self,
        shared: &Shared,
        input: Input,
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Vec<Action<Timer>> {
        self.replica
            .handle(input, now, ledger)
            .into_iter()
            .map(|e| self.translate(shared, e))
            .collect()
    }

    fn translate(&self, shared: &Shared, effect: Effect) -> Action<Timer> {
        match effect {
            Effect::PersistSafety(safety) => Action::Persist(encoding::encode(&safety)),
            Effect::Send { to, message } => Action::Send {
                to,
                message: self.outgoing(&message),
            },
            Effect::Broadcast(message) => Action::Broadcast(self.outgoing(&message)),
            Effect::SendSync { to, message } => Action::Send {
                to,
                message: Outgoing {
                    channel: Channel::Sync,
                    origin: Origin::Sync,
                    bytes: encoding::encode(&message),
                },
            },
            Effect::Commit(block) => Action::Commit(Box::new(block)),
            Effect::ArmTimer { timer, at } => Action::ArmTimer { timer, at },
            Effect::CancelTimer(timer) => Action::CancelTimer(timer),
            Effect::Evidence(evidence) => Action::Evidence(check_evidence(shared, &evidence)),
        }
    }

    fn outgoing(&self, message: &SignedMessage) -> Outgoing {
        let origin = if message.author == self.me {
            Origin::Authored
        } else {
            Origin::Forwarded
        };
        Outgoing {
            channel: Channel::Consensus,
            origin,
            bytes: message.encode(),
        }
    }
}

/// Names the evidence, its culprit, and whether it proves anything: two
/// validly signed messages by one author, of one kind and view, that differ.
fn check_evidence(shared: &Shared, evidence: &Evidence) -> EvidenceReport {
    let (kind, first, second) = match evidence {
        Evidence::ConflictingProposals { first, second } => {
            ("conflicting-proposals", first, second)
        }
        Evidence::ConflictingVotes { first, second } => ("conflicting-votes", first, second),
    };
    let same_kind =
        std::mem::discriminant(&first.payload) == std::mem::discriminant(&second.payload);
    let signed = |m: &SignedMessage| verify_decoded(m.clone(), &shared.committee).is_ok();
    let proof_checks = first.author == second.author
        && first.view() == second.view()
        && same_kind
        && first.payload != second.payload
        && signed(first)
        && signed(second);
    EvidenceReport {
        kind,
        culprit: first.author,
        proof_checks,
    }
}

impl Protocol for HotStuff {
    type Shared = Shared;
    type Timer = Timer;

    const SAFETY_KEY: &'static [u8] = b"hotstuff/safety";

    fn shared(
        genesis: &Genesis,
        verify_cache: bool,
        unsafe_quorum: Option<usize>,
    ) -> Result<Shared, String> {
        let mut committee = Committee::from_genesis(genesis).map_err(|e| e.to_string())?;
        if let Some(quorum) = unsafe_quorum {
            committee = committee.with_unsafe_quorum(quorum);
        }
        Ok(Shared {
            committee,
            cache: verify_cache.then(HashMap::new),
        })
    }

    fn boot(
        shared: &mut Shared,
        setup: &NodeSetup,
        committed: Block,
        recovered: Option<&[u8]>,
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Result<Booted<HotStuff>, String> {
        let recovered = recovered
            .map(|bytes| encoding::decode::<SafetyData>(bytes, MAX_SAFETY_BYTES))
            .transpose()
            .map_err(|e| format!("stored safety data does not decode: {e}"))?;
        let config = Config {
            base_timeout_ms: setup.base_timeout_ms,
            max_timeout_ms: setup.max_timeout_ms,
            forward: setup.forward,
            byzantine: setup.byzantine,
            ..Config::default()
        };
        let replica = Replica::new(
            shared.committee.clone(),
            setup.me,
            setup.key.clone(),
            config,
            committed,
        );
        let mut node = HotStuff {
            replica,
            me: setup.me,
        };
        let start = Input::Start {
            recovered: recovered.map(Box::new),
        };
        let actions = node.handle(shared, start, now, ledger);
        Ok((node, actions))
    }

    fn deliver(
        &mut self,
        shared: &mut Shared,
        from: ValidatorIndex,
        channel: Channel,
        bytes: &[u8],
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Result<Vec<Action<Timer>>, Rejected> {
        let input = match channel {
            Channel::Consensus => Input::Message(shared.verify(bytes).map_err(|e| rejection(&e))?),
            Channel::Sync => {
                let message = decode_sync(bytes).map_err(|_| Rejected("undecodable-sync"))?;
                // The replica may adopt these blocks without asking the
                // ledger; let the ledger see them too, so it can execute
                // them when a child needs their state.
                if let SyncMessage::Response { blocks } = &message {
                    blocks.iter().for_each(|b| ledger.observe_block(b));
                }
                Input::Sync { from, message }
            }
        };
        Ok(self.handle(shared, input, now, ledger))
    }

    fn fire(
        &mut self,
        shared: &mut Shared,
        timer: Timer,
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Vec<Action<Timer>> {
        self.handle(shared, Input::Timer(timer), now, ledger)
    }

    fn view(&self) -> u64 {
        self.replica.view().0
    }

    fn check_certificate(shared: &Shared, block: &Block) -> Result<(), String> {
        let cert = parent_cert(block).ok_or("block carries no BFT certificate")?;
        if cert.block != block.header.parent {
            return Err(format!(
                "its certificate is for {}, its parent is {}",
                cert.block, block.header.parent
            ));
        }
        let view = block_view(block).unwrap_or_default();
        if View(cert.view) >= view {
            return Err(format!(
                "its parent's certificate (view {}) is not before its own view {view}",
                cert.view
            ));
        }
        verify_qc(&shared.committee, cert).map_err(|e| e.to_string())
    }

    fn describe(channel: Channel, bytes: &[u8]) -> String {
        match channel {
            Channel::Consensus => match encoding::decode::<SignedMessage>(bytes, MAX_MESSAGE_BYTES)
            {
                Ok(m) => describe_message(&m),
                Err(e) => format!("undecodable ({e})"),
            },
            Channel::Sync => match decode_sync(bytes) {
                Ok(SyncMessage::Request { hash }) => format!("sync request {}", short(&hash)),
                Ok(SyncMessage::Response { blocks }) => {
                    let heights: Vec<String> =
                        blocks.iter().map(|b| b.header.height.to_string()).collect();
                    format!("sync response heights [{}]", heights.join(","))
                }
                Err(e) => format!("undecodable sync ({e})"),
            },
        }
    }
}

fn short(hash: &Hash) -> String {
    hash.to_string().chars().take(8).collect()
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
                p.block.header.height,
                cert,
                short(&p.block.header.parent),
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
