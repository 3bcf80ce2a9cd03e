//! Byzantine behaviours, for simulations and test networks: what a faulty
//! replica does to its outgoing messages. The protocol's safety must hold
//! with up to f replicas doing any of these.

use super::log::Phase;
use super::messages::{Payload, SignedMessage, Vote};
use super::replica::{Effect, Replica};
use crate::types::Byzantine;
use phalanx_chain::{Hash, ValidatorIndex};

impl Replica {
    /// Applies this replica's behaviour to its outgoing effects.
    pub(super) fn misbehave(&self, effects: Vec<Effect>) -> Vec<Effect> {
        match self.config.byzantine {
            Some(Byzantine::Silent) => effects
                .into_iter()
                .filter(|e| {
                    !matches!(
                        e,
                        Effect::Send { .. } | Effect::Broadcast(_) | Effect::SendSync { .. }
                    )
                })
                .collect(),
            Some(Byzantine::InvalidSignature) => effects
                .into_iter()
                .map(|e| match e {
                    Effect::Send { to, message } if message.author == self.me => Effect::Send {
                        to,
                        message: corrupt(message),
                    },
                    Effect::Broadcast(message) if message.author == self.me => {
                        Effect::Broadcast(corrupt(message))
                    }
                    other => other,
                })
                .collect(),
            Some(Byzantine::SkipHeight) => effects
                .into_iter()
                .filter(|e| {
                    !matches!(e, Effect::Broadcast(m) | Effect::Send { message: m, .. }
                        if self.skipped(m))
                })
                .collect(),
            Some(Byzantine::Reorder) => self.reorder(effects),
            Some(Byzantine::Withhold) => self.withhold(effects),
            _ => effects,
        }
    }

    /// `skip-height`: our pre-prepares of every third height.
    fn skipped(&self, message: &SignedMessage) -> bool {
        match &message.payload {
            Payload::PrePrepare(p) if message.author == self.me => {
                p.block.header().height.0.is_multiple_of(3)
            }
            _ => false,
        }
    }

    /// `reorder`: of each two pre-prepares we broadcast in one go, the
    /// second goes out first.
    fn reorder(&self, mut effects: Vec<Effect>) -> Vec<Effect> {
        let ours: Vec<usize> = effects
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e, Effect::Broadcast(m)
                    if m.author == self.me && matches!(m.payload, Payload::PrePrepare(_)))
            })
            .map(|(i, _)| i)
            .collect();
        for pair in ours.chunks_exact(2) {
            if let [a, b] = pair {
                effects.swap(*a, *b);
            }
        }
        effects
    }

    /// `withhold`: our pre-prepares reach only 2f of the others (the
    /// lowest indices); the last f never get them from us.
    fn withhold(&self, effects: Vec<Effect>) -> Vec<Effect> {
        let others: Vec<ValidatorIndex> =
            self.committee.members().filter(|v| *v != self.me).collect();
        let reach = 2 * self.committee.max_faulty();
        let mut out = Vec::with_capacity(effects.len());
        for effect in effects {
            match effect {
                Effect::Broadcast(m)
                    if m.author == self.me && matches!(m.payload, Payload::PrePrepare(_)) =>
                {
                    for to in others.iter().take(reach) {
                        out.push(Effect::Send {
                            to: *to,
                            message: m.clone(),
                        });
                    }
                }
                Effect::Send { to, message }
                    if message.author == self.me
                        && matches!(message.payload, Payload::PrePrepare(_))
                        && !others.iter().take(reach).any(|o| *o == to) => {}
                other => out.push(other),
            }
        }
        out
    }

    /// `double-vote`: a second vote in the same view and height, for a
    /// block that does not exist.
    pub(super) fn double_vote(&mut self, phase: Phase, vote: Vote) {
        let other = Vote {
            block: Hash::digest(vote.block.as_bytes()),
            ..vote
        };
        let payload = match phase {
            Phase::Prepare => Payload::Prepare(other),
            Phase::Commit => Payload::Commit(other),
        };
        let message = self.sign(payload);
        self.out.push(Effect::Broadcast(message));
    }
}

fn corrupt(mut message: SignedMessage) -> SignedMessage {
    message.signature.0[0] ^= 0x01;
    message
}
