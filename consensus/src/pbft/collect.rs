//! Collectors of the messages that form certificates outside the per-height
//! log: checkpoints (PBFT 4.3) and view changes (PBFT 4.4).

use super::messages::{Checkpoint, CheckpointCert, SignedMessage, ViewChange};
use crate::types::View;
use phalanx_chain::{Height, ValidatorIndex, ValidatorSignature};
use phalanx_crypto::Signature;
use std::collections::{BTreeMap, BTreeSet};

/// Checkpoint messages gathered per height and content: one per replica
/// and height (the replica keeps heights within a bounded range, so this
/// holds at most that range over the interval, per replica).
#[derive(Debug, Default)]
pub struct Checkpoints {
    votes: BTreeMap<Checkpoint, BTreeMap<ValidatorIndex, Signature>>,
    counted: BTreeSet<(Height, ValidatorIndex)>,
}

impl Checkpoints {
    /// Counts `author`'s checkpoint (its first at that height); returns the
    /// certificate the first time `quorum` match.
    pub fn record(
        &mut self,
        author: ValidatorIndex,
        checkpoint: Checkpoint,
        signature: Signature,
        quorum: usize,
    ) -> Option<CheckpointCert> {
        if !self.counted.insert((checkpoint.height, author)) {
            return None;
        }
        let signers = self.votes.entry(checkpoint).or_default();
        if signers.insert(author, signature).is_some() || signers.len() != quorum {
            return None;
        }
        Some(CheckpointCert {
            checkpoint,
            signatures: signers
                .iter()
                .map(|(v, s)| ValidatorSignature {
                    validator: *v,
                    signature: *s,
                })
                .collect(),
        })
    }

    /// Forgets checkpoints at or below `height` (a stable one is there).
    pub fn prune_to(&mut self, height: Height) {
        self.votes.retain(|c, _| c.height > height);
        self.counted = self
            .counted
            .split_off(&(Height(height.0 + 1), ValidatorIndex(0)));
    }
}

/// View changes gathered per new view, and each replica's highest.
#[derive(Debug, Default)]
pub struct ViewChanges {
    by_view: BTreeMap<View, BTreeMap<ValidatorIndex, SignedMessage>>,
    latest: BTreeMap<ValidatorIndex, View>,
}

impl ViewChanges {
    /// Keeps `message` (a view change for `view` by its author), the first
    /// per author and view. True if it was new.
    pub fn record(&mut self, view: View, message: SignedMessage) -> bool {
        let author = message.author;
        let latest = self.latest.entry(author).or_default();
        *latest = (*latest).max(view);
        let entry = self.by_view.entry(view).or_default();
        if entry.contains_key(&author) {
            return false;
        }
        entry.insert(author, message);
        true
    }

    /// PBFT 4.5.2: the smallest view among the highest views that `f + 1`
    /// replicas asked for, if they did (at least one of them is honest, so
    /// the view is worth joining).
    pub fn join_view(&self, f_plus_one: usize) -> Option<View> {
        let mut views: Vec<View> = self.latest.values().copied().collect();
        views.sort_unstable_by(|a, b| b.cmp(a));
        views.get(f_plus_one.checked_sub(1)?).copied()
    }

    /// `quorum` view changes for `view`, `first` (our own) among them,
    /// then the others in index order.
    pub fn quorum_for(
        &self,
        view: View,
        first: ValidatorIndex,
        quorum: usize,
    ) -> Option<Vec<SignedMessage>> {
        let entry = self.by_view.get(&view)?;
        if entry.len() < quorum {
            return None;
        }
        let own = entry.get(&first).cloned();
        let others = entry
            .iter()
            .filter(|(a, _)| **a != first)
            .map(|(_, m)| m.clone());
        Some(own.into_iter().chain(others).take(quorum).collect())
    }

    /// How many distinct replicas asked for `view` or a later one (each of
    /// them has left the views before).
    pub fn support(&self, view: View) -> usize {
        self.latest.values().filter(|v| **v >= view).count()
    }

    /// Forgets view changes for views before `view`.
    pub fn prune_below(&mut self, view: View) {
        self.by_view = self.by_view.split_off(&view);
    }
}

/// The view change a message carries, if it is one.
pub fn as_view_change(message: &SignedMessage) -> Option<&ViewChange> {
    match &message.payload {
        super::messages::Payload::ViewChange(vc) => Some(vc),
        _ => None,
    }
}
