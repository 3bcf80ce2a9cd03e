//! The pacemaker (Jolteon/DiemBFT style): the current view, its timers
//! (a first timeout that follows the committee's recent pace, with
//! exponential back-off: [`ViewTimeout`]), and the timeouts that become a
//! timeout certificate (TC).
//!
//! It decides when views change and which timers to arm; it signs nothing
//! and sends nothing. The replica asks it and carries out its answers.

use super::config::Config;
use super::io::{Effect, Timer};
use super::messages::{Payload, QuorumCert, SignedMessage, TimeoutCert, TimeoutSignature};
use crate::committee::Committee;
use crate::types::{TimeMs, View};
use crate::view_timeout::ViewTimeout;
use phalanx_chain::ValidatorIndex;
use phalanx_crypto::Signature;
use std::collections::BTreeMap;

/// What a view timer's firing comes to.
#[derive(Debug)]
pub(super) enum ViewTimerAction {
    /// Give up on the view (or say so again), and arm this.
    TimeOut(Effect),
    /// A replica with no transaction waiting waits once more, for a
    /// leader that may be waiting out its empty-block delay.
    Extend(Effect),
}

/// Views, view timers and timeouts.
#[derive(Debug)]
pub(super) struct Pacemaker {
    view: View,
    /// The view timer's length.
    timeout: ViewTimeout,
    /// n - f: timeouts that form a TC.
    quorum: usize,
    /// f + 1: timeouts at or beyond a view that prove an honest replica
    /// gave up on it.
    validity_threshold: usize,
    /// The TC of the highest view seen.
    high_tc: Option<TimeoutCert>,
    /// Timeout signatures and high QCs, by view and signer, for TCs.
    timeouts: BTreeMap<View, BTreeMap<ValidatorIndex, (QuorumCert, Signature)>>,
    /// Each validator's highest timeout view.
    latest_timeouts: BTreeMap<ValidatorIndex, View>,
}

impl Pacemaker {
    /// A pacemaker before view 1 (entered at start).
    pub fn new(config: &Config, committee: &Committee) -> Pacemaker {
        Pacemaker {
            view: View(0),
            timeout: ViewTimeout::new(
                config.base_timeout_ms,
                config.max_timeout_ms,
                config.timeout_factor,
                config.max_batch_delay_ms,
                config.empty_block_delay_ms,
            ),
            quorum: committee.quorum(),
            validity_threshold: committee.validity_threshold(),
            high_tc: None,
            timeouts: BTreeMap::new(),
            latest_timeouts: BTreeMap::new(),
        }
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// The current view's timer length (before any idle extension).
    pub fn timeout_ms(&self) -> u64 {
        self.timeout.current_ms()
    }

    /// Moves to `view` if it is ahead. Returns the timer changes to make:
    /// the old view's timers cancelled, the new view's armed. `None` if
    /// `view` is not ahead (nothing changes). `busy`: transactions wait.
    pub fn enter(&mut self, view: View, now: TimeMs, busy: bool) -> Option<Vec<Effect>> {
        if view <= self.view {
            return None;
        }
        let old = self.view;
        let mut effects = Vec::new();
        if old > View(0) {
            for timer in [
                Timer::View(old),
                Timer::ResendVote(old),
                Timer::Propose(old),
            ] {
                effects.push(Effect::CancelTimer(timer));
            }
        }
        self.view = view;
        self.timeout.resume(now, busy);
        effects.push(Effect::ArmTimer {
            timer: Timer::View(view),
            at: now.saturating_add(self.timeout.current_ms()),
        });
        let keep_from = View(view.0.saturating_sub(2));
        self.timeouts = self.timeouts.split_off(&keep_from);
        Some(effects)
    }

    /// A QC for `qc_view`: if it is for the current view or later, the
    /// committee made progress (back-off resets, the gap since the last
    /// counts towards the pace) and the view after it is the one to enter.
    pub fn on_qc(&mut self, qc_view: View, now: TimeMs, busy: bool) -> Option<View> {
        if qc_view < self.view {
            return None;
        }
        self.timeout.progress(now, busy);
        Some(qc_view.next())
    }

    /// A vote had to be re-sent: the gap to the next QC measures the
    /// recovery, not the committee's pace, and does not count.
    pub fn recovering(&mut self) {
        self.timeout.interrupt();
    }

    /// Keeps `tc` if it is the highest seen.
    pub fn observe_tc(&mut self, tc: &TimeoutCert) {
        if self.high_tc.as_ref().is_none_or(|h| tc.view > h.view) {
            self.high_tc = Some(tc.clone());
        }
    }

    /// The view timer of `view` fired; `first`: the replica has not timed
    /// out in it yet; `idle`: no transaction waits here. `None` if `view`
    /// is no longer current.
    ///
    /// An idle replica's first firing is put off once by the empty-block
    /// delay (the next leader may be waiting it out). Otherwise the replica times out: the first firing in a view
    /// counts towards back-off; the timer comes back every base period
    /// after that, so that the replica re-sends its timeout and a heal is
    /// noticed within one base period however long back-off grew.
    pub fn on_view_timer(
        &mut self,
        view: View,
        first: bool,
        idle: bool,
        now: TimeMs,
    ) -> Option<ViewTimerAction> {
        if view != self.view {
            return None;
        }
        if first
            && idle
            && let Some(wait) = self.timeout.idle_extension()
        {
            return Some(ViewTimerAction::Extend(Effect::ArmTimer {
                timer: Timer::View(view),
                at: now.saturating_add(wait),
            }));
        }
        if first {
            self.timeout.failed();
        }
        Some(ViewTimerAction::TimeOut(Effect::ArmTimer {
            timer: Timer::View(view),
            at: now.saturating_add(self.timeout.base_ms()),
        }))
    }

    /// The timer that re-sends the vote of `view` a quarter of a base
    /// timeout from `now`.
    pub fn vote_resend_timer(&self, view: View, now: TimeMs) -> Effect {
        let period = (self.timeout.base_ms() / 4).max(1);
        Effect::ArmTimer {
            timer: Timer::ResendVote(view),
            at: now.saturating_add(period),
        }
    }

    /// The highest TC, if it is for a view before `view`: a timeout for
    /// `view` carries it so that replicas that missed it move on.
    pub fn high_tc_before(&self, view: View) -> Option<TimeoutCert> {
        self.high_tc.clone().filter(|tc| tc.view < view)
    }

    /// The TC that ended the view before `view`, if held: it justifies a
    /// proposal in `view` whose QC is older.
    pub fn tc_ending_view_before(&self, view: View) -> Option<TimeoutCert> {
        self.high_tc.clone().filter(|tc| tc.view.next() == view)
    }

    /// Keeps a timeout's signature and high QC for a TC of its view (the
    /// first one from each signer).
    pub fn record_timeout(&mut self, message: &SignedMessage) {
        let Payload::Timeout(timeout) = &message.payload else {
            return;
        };
        self.timeouts
            .entry(timeout.view)
            .or_default()
            .entry(message.author)
            .or_insert_with(|| (timeout.high_qc.clone(), message.signature));
    }

    /// Tracks each validator's highest timeout. Returns the view to time
    /// out in when f + 1 validators (so at least one honest) have timed
    /// out in it or later and it is at or beyond the current view: views
    /// resynchronize after a partition heals, and a TC forms as soon as
    /// n - f replicas are there.
    pub fn note_latest_timeout(&mut self, author: ValidatorIndex, view: View) -> Option<View> {
        let latest = self.latest_timeouts.entry(author).or_default();
        *latest = (*latest).max(view);
        let mut views: Vec<View> = self.latest_timeouts.values().copied().collect();
        views.sort_unstable_by(|a, b| b.cmp(a));
        let join = *views.get(self.validity_threshold.checked_sub(1)?)?;
        (join >= self.view).then_some(join)
    }

    /// A TC for `view` if n - f timeouts for it are held and it is not
    /// behind the current view.
    pub fn form_tc(&self, view: View) -> Option<TimeoutCert> {
        let entry = self.timeouts.get(&view)?;
        if entry.len() < self.quorum || view < self.view {
            return None;
        }
        let high_qc = entry
            .values()
            .map(|(qc, _)| qc)
            .max_by_key(|qc| qc.view)
            .cloned()?;
        Some(TimeoutCert {
            view,
            high_qc,
            signatures: entry
                .iter()
                .map(|(validator, (qc, signature))| TimeoutSignature {
                    validator: *validator,
                    high_qc_view: View(qc.view),
                    signature: *signature,
                })
                .collect(),
        })
    }
}
