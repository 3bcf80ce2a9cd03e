//! Which consensus messages a replica takes in: not too old, not too far
//! ahead, not seen before; and which it forwards.
//!
//! Every new valid message is broadcast again once (deduplicated by
//! content), keeping its author's signature, so it reaches honest replicas
//! even when its author's links are cut.

use super::config::Config;
use super::messages::SignedMessage;
use crate::types::View;
use phalanx_chain::{Hash, ValidatorIndex};
use phalanx_crypto::maps::HashSet;
use std::collections::BTreeMap;

/// Messages more than this many views behind the current one are dropped,
/// and per-view bookkeeping that far back is forgotten.
pub(super) const PAST_VIEWS_KEPT: u64 = 2;

/// The content ids of recent messages.
#[derive(Debug)]
pub(super) struct Intake {
    me: ValidatorIndex,
    forward: bool,
    future_view_window: u64,
    /// Content ids of messages already handled, by view.
    seen: BTreeMap<View, HashSet<Hash>>,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Too old, or seen before: drop it.
    Drop,
    /// Too far ahead to keep (see `Config::future_view_window`): learn
    /// only from its certificates, and from a timeout's view.
    FarAhead,
    /// New: handle it, and forward it first if `forward`.
    New { forward: bool },
}

impl Intake {
    pub fn new(config: &Config, me: ValidatorIndex) -> Intake {
        Intake {
            me,
            forward: config.forward,
            future_view_window: config.future_view_window,
            seen: BTreeMap::new(),
        }
    }

    /// Decides on `message` (whose content id is `id`) in view `current`,
    /// and remembers it if new.
    pub fn admit(&mut self, message: &SignedMessage, id: Hash, current: View) -> Admission {
        let view = message.view();
        if view.0.saturating_add(PAST_VIEWS_KEPT) < current.0 {
            return Admission::Drop;
        }
        if view.0 > current.0.saturating_add(self.future_view_window) {
            return Admission::FarAhead;
        }
        if !self.seen.entry(view).or_default().insert(id) {
            return Admission::Drop;
        }
        Admission::New {
            forward: self.forward && message.author != self.me,
        }
    }

    /// Forgets the messages of views before `keep_from`.
    pub fn prune_below(&mut self, keep_from: View) {
        self.seen = self.seen.split_off(&keep_from);
    }
}
