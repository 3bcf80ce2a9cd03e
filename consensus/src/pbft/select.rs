//! Which blocks a new view re-proposes: the computation a new primary
//! makes from a quorum of view changes, and every replica repeats before
//! accepting its new view (PBFT 4.4, "the new primary determines the
//! sequence number min-s ... and max-s").
//!
//! From the highest stable checkpoint among the view changes (min-s),
//! height by height: the certificate of the highest view at that height is
//! chosen if its block is a child of the block chosen below it; the first
//! height with no certificate, or whose best certificate does not link,
//! ends the re-proposals. Heights from there up to the highest certified
//! one (max-s) are filled with empty blocks, the paper's null requests.
//!
//! Why stopping at a gap or a broken link is safe: a replica commits a
//! height only once it has prepared, in that view, every height between
//! its last executed block and it (see the module docs). So a block that
//! committed anywhere has, in every quorum of view changes, a certificate
//! at its height and at each height below it down to the checkpoint, each
//! of the highest view there and each linking to the one below: the walk
//! reaches it. A certificate above a gap or a broken link therefore never
//! committed anywhere and can be dropped.

use super::messages::{Checkpoint, CheckpointCert, ViewChange, Vote};
use phalanx_chain::{Hash, Height};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a new view must propose before anything new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The highest stable checkpoint among the view changes (min-s).
    pub checkpoint: Checkpoint,
    /// Blocks to re-propose, one per height from `checkpoint.height + 1`,
    /// each the child of the one before: the vote of the certificate
    /// chosen (its view is the view it was certified in).
    pub reproposals: Vec<Vote>,
    /// Heights after the re-proposals, up to this one (max-s), get empty
    /// blocks.
    pub fill_to: Height,
}

impl Plan {
    /// The height of the last block the plan fixes (re-proposed or empty).
    pub fn end(&self) -> Height {
        let reproposed = self
            .reproposals
            .last()
            .map_or(self.checkpoint.height, |v| v.height);
        reproposed.max(self.fill_to)
    }

    /// What the plan says about `height`: a block to re-propose, an empty
    /// block, or nothing (a fresh proposal).
    pub fn slot(&self, height: Height) -> PlanSlot {
        if height <= self.checkpoint.height || height > self.end() {
            return PlanSlot::Fresh;
        }
        let offset = height.0 - self.checkpoint.height.0 - 1;
        match usize::try_from(offset)
            .ok()
            .and_then(|i| self.reproposals.get(i))
        {
            Some(vote) => PlanSlot::Repropose(*vote),
            None => PlanSlot::Empty,
        }
    }
}

/// What a plan fixes at one height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSlot {
    Repropose(Vote),
    Empty,
    Fresh,
}

/// The checkpoint of the highest height among `view_changes` (ties, which
/// at most f faulty replicas cannot make disagree, go to the lower hash).
pub fn highest_checkpoint<'a>(
    view_changes: impl IntoIterator<Item = &'a ViewChange>,
) -> Option<&'a CheckpointCert> {
    view_changes
        .into_iter()
        .map(|vc| &vc.checkpoint)
        .max_by(|a, b| {
            let (a, b) = (&a.checkpoint, &b.checkpoint);
            a.height.cmp(&b.height).then(b.block.cmp(&a.block))
        })
}

/// The plan for a new view from a quorum of view changes. With
/// `ignore_certificates` (the simulator's negative control) every
/// certificate is ignored: nothing is re-proposed.
pub fn select<'a>(
    view_changes: impl IntoIterator<Item = &'a ViewChange> + Clone,
    ignore_certificates: bool,
) -> Option<Plan> {
    let checkpoint = highest_checkpoint(view_changes.clone())?.checkpoint;
    let mut best: BTreeMap<Height, &Vote> = BTreeMap::new();
    for vc in view_changes {
        for certified in &vc.certified {
            let vote = certified.vote();
            if vote.height <= checkpoint.height {
                continue;
            }
            let better = best.get(&vote.height).is_none_or(|b| {
                (vote.view, std::cmp::Reverse(vote.block)) > (b.view, std::cmp::Reverse(b.block))
            });
            if better {
                best.insert(vote.height, vote);
            }
        }
    }
    if ignore_certificates {
        return Some(Plan {
            checkpoint,
            reproposals: Vec::new(),
            fill_to: checkpoint.height,
        });
    }
    let fill_to = best
        .keys()
        .next_back()
        .copied()
        .unwrap_or(checkpoint.height);
    let mut reproposals = Vec::new();
    let mut parent: Hash = checkpoint.block;
    let mut height = checkpoint.height;
    loop {
        height = Height(height.0 + 1);
        match best.get(&height) {
            Some(vote) if vote.parent == parent => {
                parent = vote.block;
                reproposals.push(**vote);
            }
            _ => break,
        }
    }
    Some(Plan {
        checkpoint,
        reproposals,
        fill_to,
    })
}
