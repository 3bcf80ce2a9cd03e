//! What the two committee protocols share on the seam. Their replicas take
//! the same kinds of input and ask for the same kinds of effect (each with
//! its own message, safety data, timer and evidence types), their signed
//! messages travel as bytes with an author, and catch-up traffic comes from
//! a member. Each protocol's seam uses these to answer the seam's questions
//! one way.

use crate::catchup::{SyncMessage, decode_sync};
use crate::ledger::LocalFault;
use crate::protocol::{Channel, Effect, Evidence, Fault, Input, Origin, Outgoing};
use crate::types::TimeMs;
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::{Block, Hash, ValidatorIndex};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A message a validator signed, as it travels.
pub trait Signed {
    fn author(&self) -> ValidatorIndex;
    /// Its kind, for metrics.
    fn kind(&self) -> &'static str;
    fn encode(&self) -> Vec<u8>;
}

/// What a committee replica is told: safety data `S` at start-up, verified
/// messages `M`, catch-up traffic, its timers `T`.
#[derive(Debug, Clone)]
pub enum ReplicaInput<M, S, T> {
    /// The first input: safety data read back from storage, if any.
    Start { recovered: Option<Box<S>> },
    /// A consensus message that passed verification.
    Message(M),
    /// Catch-up traffic from a member.
    Sync {
        from: ValidatorIndex,
        message: SyncMessage,
    },
    /// A timer armed earlier fired.
    Timer(T),
    /// New transactions reached the caller's pool.
    TransactionsAvailable,
}

/// What a committee replica asks its caller to do, in order: `P` is its
/// safety data as persisted, `M` its signed messages, `T` its timers, `E`
/// its evidence.
#[must_use]
#[derive(Debug, Clone)]
// A commit is one effect per final block, so its size costs little; a
// box would cost an allocation per commit instead.
#[allow(clippy::large_enum_variant)]
pub enum ReplicaEffect<M, P, T, E> {
    /// Write and flush before carrying out any later effect.
    PersistSafety(P),
    Send {
        to: ValidatorIndex,
        message: M,
    },
    Broadcast(M),
    /// Another validator's message broadcast again as it arrived (its
    /// bytes are its encoding: forwarding does not encode it again).
    Relay(Relayed),
    SendSync {
        to: ValidatorIndex,
        message: SyncMessage,
    },
    /// A final block; they come in height order.
    Commit(Block),
    /// A timer armed earlier is no longer needed.
    CancelTimer(T),
    /// Deliver the timer at `at` (replacing an earlier arming of it).
    ArmTimer {
        timer: T,
        at: TimeMs,
    },
    Evidence(E),
}

/// A message to broadcast again as it arrived: its author, its kind (for
/// metrics) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub author: ValidatorIndex,
    pub kind: &'static str,
    pub bytes: Arc<[u8]>,
}

/// Safety data as a replica hands it over to be persisted: the bytes to
/// write.
pub trait SafetyBytes {
    fn into_bytes(self) -> Vec<u8>;
}

/// Safety data encoded whole.
impl<S: Serialize> SafetyBytes for S {
    fn into_bytes(self) -> Vec<u8> {
        encoding::encode(&self)
    }
}

/// Safety data a replica encoded itself (PBFT reuses the encodings of the
/// heights that did not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSafety(pub Vec<u8>);

impl SafetyBytes for EncodedSafety {
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A consensus message whose size, encoding, author, signature and
/// embedded certificates have been checked against the committee, with
/// its content id, and the bytes it arrived as when it came from the
/// network. Only a protocol's `verify_message` (and a replica, for its
/// own messages) make one.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    /// BLAKE3 of the message's (canonical) encoding.
    id: Hash,
    /// The encoding it arrived as (`None` for a message decoded or made
    /// in process): forwarding sends these bytes instead of encoding the
    /// message again.
    wire: Option<Arc<[u8]>>,
}

/// Equal values have equal ids and encodings: the bytes kept are not
/// compared.
impl<T: PartialEq> PartialEq for Verified<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.value == other.value
    }
}

impl<T: Eq> Eq for Verified<T> {}

impl<T> Verified<T> {
    /// `value`, checked, whose encoding hashes to `id`.
    pub(crate) fn new(value: T, id: Hash) -> Verified<T> {
        Verified {
            value,
            id,
            wire: None,
        }
    }

    /// The same message, decoded from `bytes` (its canonical encoding,
    /// which hashes to its id): the bytes are kept for forwarding.
    pub(crate) fn with_wire(self, bytes: &[u8]) -> Verified<T> {
        Verified {
            wire: Some(Arc::from(bytes)),
            ..self
        }
    }

    /// The bytes it arrived as, if it came from the network.
    pub fn wire(&self) -> Option<&Arc<[u8]>> {
        self.wire.as_ref()
    }

    pub fn get(&self) -> &T {
        &self.value
    }

    pub fn into_inner(self) -> T {
        self.value
    }

    /// The message's content id (BLAKE3 of its encoding), from the bytes
    /// it arrived as: decoding accepts only canonical encodings, so they
    /// are the encoding. Replicas deduplicate by it.
    pub fn id(&self) -> Hash {
        self.id
    }
}

/// The effect that forwards `message`: its bytes as they arrived, or the
/// message itself if it has none (decoded or made in process) or if the
/// replica misbehaves on purpose (`byzantine`: its filters act on
/// messages, not bytes).
pub fn forward<M: Signed + Clone, P, T, E>(
    message: &Verified<M>,
    byzantine: bool,
) -> ReplicaEffect<M, P, T, E> {
    match message.wire() {
        Some(bytes) if !byzantine => ReplicaEffect::Relay(Relayed {
            author: message.get().author(),
            kind: message.get().kind(),
            bytes: Arc::clone(bytes),
        }),
        _ => ReplicaEffect::Broadcast(message.get().clone()),
    }
}

/// A verified message of a committee protocol: a signed consensus message
/// `M`, or catch-up traffic from a member.
#[derive(Debug, Clone)]
pub enum BftMessage<M> {
    Consensus(M),
    Sync {
        from: ValidatorIndex,
        message: SyncMessage,
    },
}

impl<M> BftMessage<M> {
    /// The message's kind, given how to name a consensus message's.
    pub fn kind(&self, consensus: impl FnOnce(&M) -> &'static str) -> &'static str {
        match self {
            BftMessage::Consensus(m) => consensus(m),
            BftMessage::Sync { .. } => "catch-up",
        }
    }
}

/// Bytes from `sender` on `channel`: consensus bytes through the
/// protocol's own verification, catch-up bytes decoded and accepted from
/// members only (`not_member` otherwise).
pub fn verify<M, E: From<DecodeError>>(
    sender: Option<ValidatorIndex>,
    channel: Channel,
    bytes: &[u8],
    consensus: impl FnOnce(&[u8]) -> Result<M, E>,
    not_member: E,
) -> Result<BftMessage<M>, E> {
    match channel {
        Channel::Consensus => consensus(bytes).map(BftMessage::Consensus),
        Channel::Sync => {
            let message = decode_sync(bytes)?;
            let from = sender.ok_or(not_member)?;
            Ok(BftMessage::Sync { from, message })
        }
    }
}

/// The replica's input for a seam input, decoding recovered safety data
/// (at most `max_safety_bytes`); `None` for an input committees ignore (a
/// mined block).
fn replica_input<M, S, T>(
    input: Input<BftMessage<M>, T>,
    max_safety_bytes: usize,
) -> Result<Option<ReplicaInput<M, S, T>>, Fault>
where
    S: DeserializeOwned + Serialize,
{
    Ok(Some(match input {
        Input::Start { recovered } => {
            let recovered = recovered
                .map(|bytes| encoding::decode::<S>(&bytes, max_safety_bytes))
                .transpose()
                .map_err(Fault::CorruptSafetyData)?;
            ReplicaInput::Start {
                recovered: recovered.map(Box::new),
            }
        }
        Input::Message(BftMessage::Consensus(m)) => ReplicaInput::Message(m),
        Input::Message(BftMessage::Sync { from, message }) => ReplicaInput::Sync { from, message },
        Input::Timer(timer) => ReplicaInput::Timer(timer),
        Input::TransactionsAvailable => ReplicaInput::TransactionsAvailable,
        Input::Mined(_) => return Ok(None),
    }))
}

/// One seam input through a committee replica: `step` runs the replica on
/// the decoded input and returns its effects and any local fault it hit;
/// the effects come back translated for the seam (see [`translate`]).
pub fn handle<M, S, T, O, P, E>(
    me: ValidatorIndex,
    input: Input<BftMessage<M>, T>,
    max_safety_bytes: usize,
    step: impl FnOnce(ReplicaInput<M, S, T>) -> (Vec<ReplicaEffect<O, P, T, E>>, Option<LocalFault>),
) -> Result<Vec<Effect<T>>, Fault>
where
    S: DeserializeOwned + Serialize,
    O: Signed,
    P: SafetyBytes,
    E: Into<Evidence>,
{
    let Some(input) = replica_input::<M, S, T>(input, max_safety_bytes)? else {
        return Ok(Vec::new());
    };
    let (effects, fault) = step(input);
    if let Some(fault) = fault {
        return Err(Fault::Local(fault));
    }
    Ok(effects.into_iter().map(|e| translate(me, e)).collect())
}

/// The seam's effect for a replica's: messages encoded and labelled
/// (authored by `me`, or forwarded), safety data encoded, a final block as
/// an extension that is final at once.
fn translate<M, P, T, E>(me: ValidatorIndex, effect: ReplicaEffect<M, P, T, E>) -> Effect<T>
where
    M: Signed,
    P: SafetyBytes,
    E: Into<Evidence>,
{
    match effect {
        ReplicaEffect::PersistSafety(safety) => Effect::Persist(safety.into_bytes()),
        ReplicaEffect::Send { to, message } => Effect::Send {
            to,
            message: outgoing(me, &message),
        },
        ReplicaEffect::Broadcast(message) => Effect::Broadcast(outgoing(me, &message)),
        ReplicaEffect::Relay(relayed) => Effect::Broadcast(Outgoing {
            channel: Channel::Consensus,
            origin: if relayed.author == me {
                Origin::Authored
            } else {
                Origin::Forwarded
            },
            kind: relayed.kind,
            bytes: relayed.bytes.to_vec(),
        }),
        ReplicaEffect::SendSync { to, message } => Effect::Send {
            to,
            message: Outgoing {
                channel: Channel::Sync,
                origin: Origin::Sync,
                kind: "catch-up",
                bytes: message.encode(),
            },
        },
        ReplicaEffect::Commit(block) => Effect::Extend {
            block: Box::new(block),
            finalized: true,
        },
        ReplicaEffect::ArmTimer { timer, at } => Effect::ArmTimer { timer, at },
        ReplicaEffect::CancelTimer(timer) => Effect::CancelTimer(timer),
        ReplicaEffect::Evidence(evidence) => Effect::Evidence(evidence.into()),
    }
}

fn outgoing(me: ValidatorIndex, message: &impl Signed) -> Outgoing {
    let origin = if message.author() == me {
        Origin::Authored
    } else {
        Origin::Forwarded
    };
    Outgoing {
        channel: Channel::Consensus,
        origin,
        kind: message.kind(),
        bytes: message.encode(),
    }
}

/// Evidence of `kind` from two messages of one author.
pub fn evidence(kind: &'static str, first: &impl Signed, second: &impl Signed) -> Evidence {
    Evidence {
        kind,
        culprit: first.author(),
        first: first.encode(),
        second: second.encode(),
    }
}
