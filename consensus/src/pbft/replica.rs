//! The PBFT replica: its state, inputs and effects, start-up and restart,
//! timers, signing and persistence. The normal case, view changes,
//! proposing and catch-up are in their own files.

use super::collect::{Checkpoints, ViewChanges};
use super::log::Log;
use super::messages::{
    Certified, CheckpointCert, SignedMessage, Verified, genesis_cert, genesis_checkpoint, sign,
};
use super::messages::{Checkpoint, Payload};
use super::select::Plan;
use crate::bft::{EncodedSafety, ReplicaEffect, ReplicaInput};
use crate::committee::Committee;
use crate::ledger::{Ledger, LedgerError, LocalFault};
use crate::types::{Byzantine, TimeMs, View};
use crate::view_timeout::ViewTimeout;
use phalanx_chain::{Address, BftCertificate, Block, Hash, Height, ValidatorIndex, encoding};
use phalanx_crypto::Keypair;
use phalanx_crypto::maps::HashSet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Content ids of messages remembered, to handle (and forward) each once.
const SEEN_ENTRIES: usize = 16_384;
/// Blocks asked for at once, at most.
pub(super) const MAX_OUTSTANDING_REQUESTS: usize = 256;
/// Pre-prepares kept while they wait for their parent's, or for their
/// view to start, at most.
pub(super) const MAX_WAITING: usize = 64;
/// Blocks held above the executed head, at most: a replica further behind
/// than this catches up through the node's block sync instead.
pub const MAX_HELD_BLOCKS: usize = 1_024;

/// Tunables, each with a bound.
#[derive(Debug, Clone)]
pub struct Config {
    /// The first view timeout, at least: a view that executes nothing for
    /// this long is changed.
    pub base_timeout_ms: u64,
    /// The first timeout is also at least this many times the second-longest of
    /// the last few gaps between executions (0: the base alone). See
    /// [`crate::view_timeout`].
    pub timeout_factor: u64,
    /// The longest the timeout grows to, doubling with each view change in
    /// a row that made no progress.
    pub max_timeout_ms: u64,
    /// A checkpoint every this many heights (K).
    pub checkpoint_interval: u64,
    /// Heights accepted above the stable checkpoint (L): the high
    /// watermark is the low one plus this.
    pub watermark_window: u64,
    /// Heights the primary keeps in flight (pre-prepared, not executed).
    pub max_in_flight: u64,
    /// Re-broadcast every new valid message once.
    pub forward: bool,
    /// Misbehave on purpose (simulations and test networks only).
    pub byzantine: Option<Byzantine>,
    /// As primary, wait up to this long for a full batch (0: at once).
    pub max_batch_delay_ms: u64,
    /// As primary with an empty pool and nothing in flight, wait this long
    /// before an empty block (a heartbeat that shows the primary is alive).
    pub empty_block_delay_ms: u64,
    /// Negative control (simulations only): ignore prepared certificates in
    /// view changes. Breaks safety on purpose.
    pub unsafe_view_change: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_timeout_ms: 1_000,
            timeout_factor: crate::view_timeout::DEFAULT_TIMEOUT_FACTOR,
            max_timeout_ms: 30_000,
            checkpoint_interval: 16,
            watermark_window: 32,
            max_in_flight: 4,
            forward: true,
            byzantine: None,
            max_batch_delay_ms: 0,
            empty_block_delay_ms: 0,
            unsafe_view_change: false,
        }
    }
}

/// What this replica signed at one height, in the latest view it signed
/// anything there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub view: View,
    /// The block pre-prepared (as primary).
    pub preprepare: Option<Hash>,
    pub prepare: Option<Hash>,
    pub commit: Option<Hash>,
}

/// What a replica must not forget across a crash. Persisted before any
/// message that depends on it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyData {
    /// The current view (the target view while changing views).
    pub view: View,
    /// True while waiting for the new view `view` to start.
    pub view_changing: bool,
    /// Per height above the stable checkpoint: what was signed there, so a
    /// restarted replica never signs a second, different PRE-PREPARE,
    /// PREPARE or COMMIT for one view and height.
    pub sent: BTreeMap<Height, Sent>,
    /// The P-set: per height above the stable checkpoint, the certificate
    /// of the highest view (prepared, or final) that a view change carries.
    pub certified: BTreeMap<Height, Certified>,
    /// The stable checkpoint.
    pub stable: CheckpointCert,
    /// The last view change signed (re-sent, never re-made, for its view).
    pub last_view_change: Option<SignedMessage>,
    /// The plan of the current view, from its new view: what must be
    /// re-proposed where.
    pub plan: Option<(View, Plan)>,
    /// The last view this replica made a new view for, as its primary.
    pub new_view_sent: Option<View>,
}

/// Encodes [`SafetyData`] exactly as postcard does
/// (`encoding::encode(&safety)`), reusing the encoding of each height's
/// entry while it is unchanged. A replica persists before most messages it
/// sends, and its safety data holds up to a watermark window of heights, of
/// which one changes at a time: encoding it whole took a fifth of the
/// simulator's PBFT profile.
///
/// postcard writes a struct as its fields in order, a map as its length
/// (LEB128) then each key and value, so the concatenation below is the
/// whole encoding; debug builds (every test, and the simulator's tests)
/// check it against `encoding::encode` on every persist.
#[derive(Debug, Default)]
pub(super) struct SafetyEncoder {
    sent: BTreeMap<Height, (Sent, Vec<u8>)>,
    certified: BTreeMap<Height, (Certified, Vec<u8>)>,
    /// The last encoding's length: the next one is about as long, so its
    /// buffer is allocated once rather than grown step by step.
    last_len: usize,
}

impl SafetyEncoder {
    pub(super) fn encode(&mut self, safety: &SafetyData) -> Vec<u8> {
        let SafetyData {
            view,
            view_changing,
            sent,
            certified,
            stable,
            last_view_change,
            plan,
            new_view_sent,
        } = safety;
        let mut out = Vec::with_capacity(self.last_len.saturating_add(64));
        encoding::encode_into(view, &mut out);
        encoding::encode_into(view_changing, &mut out);
        encode_map(&mut self.sent, sent, &mut out);
        encode_map(&mut self.certified, certified, &mut out);
        encoding::encode_into(stable, &mut out);
        encoding::encode_into(last_view_change, &mut out);
        encoding::encode_into(plan, &mut out);
        encoding::encode_into(new_view_sent, &mut out);
        self.last_len = out.len();
        out
    }
}

/// Appends `map`'s encoding, from `cache`'s encodings of entries that did
/// not change; `cache` then holds `map`'s entries.
fn encode_map<V: Serialize + Clone + PartialEq>(
    cache: &mut BTreeMap<Height, (V, Vec<u8>)>,
    map: &BTreeMap<Height, V>,
    out: &mut Vec<u8>,
) {
    cache.retain(|height, _| map.contains_key(height));
    // A sequence's length: the same LEB128 varint as a u64's.
    encoding::encode_into(&(map.len() as u64), out);
    for (height, value) in map {
        match cache.get(height) {
            Some((cached, bytes)) if cached == value => out.extend_from_slice(bytes),
            _ => {
                let bytes = encoding::encode(&(height, value));
                out.extend_from_slice(&bytes);
                cache.insert(*height, (value.clone(), bytes));
            }
        }
    }
}

/// A timer the replica asks its caller to arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// No progress in this view for the timeout: change views.
    View(View),
    /// Waiting for the new view of this view: try the next one.
    ViewChange(View),
    /// A primary waiting for a batch proposes anyway.
    Propose(View),
    /// Heights of this view still not executed: send our own pre-prepares
    /// and votes for them again (a lost copy would otherwise cost a view).
    Resend(View),
}

/// What the replica is told (see [`ReplicaInput`]).
pub type Input = ReplicaInput<Verified<SignedMessage>, SafetyData, Timer>;

/// Proof that a validator signed two conflicting messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Two pre-prepares for one view and height with different blocks.
    ConflictingPrePrepares {
        first: SignedMessage,
        second: SignedMessage,
    },
    /// Two prepares, or two commits, for one view and height that differ.
    ConflictingVotes {
        first: SignedMessage,
        second: SignedMessage,
    },
}

/// What the caller must do, in order (see [`ReplicaEffect`]); final blocks
/// come in height order.
pub type Effect = ReplicaEffect<SignedMessage, EncodedSafety, Timer, Evidence>;

impl From<Evidence> for crate::protocol::Evidence {
    fn from(evidence: Evidence) -> Self {
        match evidence {
            Evidence::ConflictingPrePrepares { first, second } => {
                crate::bft::evidence("conflicting-pre-prepares", &first, &second)
            }
            Evidence::ConflictingVotes { first, second } => {
                crate::bft::evidence("conflicting-votes", &first, &second)
            }
        }
    }
}

/// Normal operation, or waiting for a new view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Normal,
    ViewChange,
}

/// A primary's wait for a batch: since when, and the timer armed.
#[derive(Debug, Default)]
pub(super) struct ProposeWait {
    pub(super) height: Height,
    pub(super) since: TimeMs,
    pub(super) timer_at: Option<TimeMs>,
}

/// A PBFT replica. Feed it inputs with [`Replica::handle`].
#[derive(Debug)]
pub struct Replica {
    pub(super) committee: Committee,
    pub(super) me: ValidatorIndex,
    pub(super) key: Keypair,
    pub(super) config: Config,
    pub(super) now: TimeMs,
    pub(super) started: bool,
    pub(super) view: View,
    pub(super) mode: Mode,
    pub(super) safety: SafetyData,
    /// Encodings of its per-height entries, for the next persist.
    safety_encoder: SafetyEncoder,
    /// Safety data changed since it was last persisted.
    pub(super) dirty: bool,
    /// The last executed (final) block.
    pub(super) head: Block,
    pub(super) log: Log,
    pub(super) checkpoints: Checkpoints,
    /// This replica's own latest checkpoint, re-sent until it is stable.
    pub(super) own_checkpoint: Option<SignedMessage>,
    pub(super) view_changes: ViewChanges,
    /// The new view that started the current view, for replicas that
    /// missed it; and who was sent it already.
    pub(super) new_view: Option<SignedMessage>,
    pub(super) new_view_sent_to: BTreeSet<ValidatorIndex>,
    /// Who was sent our view change again, for the target view.
    pub(super) view_change_sent_to: BTreeSet<ValidatorIndex>,
    /// In the normal case: who sent normal-case messages of a later view
    /// than ours (at most n; cleared when our view changes).
    pub(super) seen_ahead: BTreeSet<ValidatorIndex>,
    /// When n - f view changes for the target view were first held.
    pub(super) view_change_quorum_at: Option<TimeMs>,
    /// The newest commit certificate known, which a proposal carries.
    pub(super) last_commit: BftCertificate,
    /// Pre-prepares waiting for their parent's pre-prepare or their view.
    pub(super) waiting: Vec<Verified<SignedMessage>>,
    /// Blocks asked for and not yet received, with the view of the ask
    /// (ordered: retries go out in a fixed order, as a deterministic
    /// simulation needs).
    pub(super) requested: BTreeMap<Hash, View>,
    pub(super) sync_retries: u64,
    seen: HashSet<Hash>,
    seen_order: VecDeque<Hash>,
    /// The view timer's length: the pace of recent executions, and view
    /// changes in a row that did not lead to progress.
    pub(super) view_timeout: ViewTimeout,

    pub(super) propose_wait: ProposeWait,
    /// New blocks proposed while handling the current input. A committee
    /// of one commits each at once and could propose without end: past
    /// `max_in_flight` the rest waits for a propose timer due at once.
    pub(super) proposed_now: u64,
    /// Set while executing final blocks (proposing may make more final).
    pub(super) executing: bool,
    /// Our own pre-prepares and votes of the current view, per height not
    /// executed yet, re-sent while the height waits (see [`Timer::Resend`]).
    pub(super) own_messages: BTreeMap<Height, (TimeMs, Vec<SignedMessage>)>,
    pub(super) resend_armed: bool,
    pub(super) fault: Option<LocalFault>,
    pub(super) out: Vec<Effect>,
}

impl Replica {
    /// A replica for validator `me`, whose last executed block (genesis on a
    /// new chain) is `committed`.
    pub fn new(
        committee: Committee,
        me: ValidatorIndex,
        key: Keypair,
        config: Config,
        committed: Block,
    ) -> Replica {
        let stable = genesis_checkpoint(&committee, &committed);
        let view_timeout = ViewTimeout::new(
            config.base_timeout_ms,
            config.max_timeout_ms,
            config.timeout_factor,
            config.max_batch_delay_ms,
            config.empty_block_delay_ms,
        );
        Replica {
            last_commit: genesis_cert(&committee),
            committee,
            me,
            key,
            config,
            now: 0,
            started: false,
            view: View(0),
            mode: Mode::Normal,
            safety: SafetyData {
                view: View(0),
                view_changing: false,
                sent: BTreeMap::new(),
                certified: BTreeMap::new(),
                stable,
                last_view_change: None,
                plan: None,
                new_view_sent: None,
            },
            safety_encoder: SafetyEncoder::default(),
            dirty: false,
            head: committed,
            log: Log::new(MAX_HELD_BLOCKS),
            checkpoints: Checkpoints::default(),
            own_checkpoint: None,
            view_changes: ViewChanges::default(),
            new_view: None,
            new_view_sent_to: BTreeSet::new(),
            view_change_sent_to: BTreeSet::new(),
            seen_ahead: BTreeSet::new(),
            view_change_quorum_at: None,
            waiting: Vec::new(),
            requested: BTreeMap::new(),
            sync_retries: 0,
            seen: HashSet::default(),
            seen_order: VecDeque::new(),
            view_timeout,
            propose_wait: ProposeWait::default(),
            proposed_now: 0,
            executing: false,
            own_messages: BTreeMap::new(),
            resend_armed: false,
            fault: None,
            out: Vec::new(),
        }
    }

    /// Handles one input at time `now` and returns the effects to carry
    /// out, in order. Callers must make every [`Effect::PersistSafety`]
    /// durable (written and flushed) before carrying out the effects after
    /// it; otherwise a restart may sign a conflicting message.
    pub fn handle(&mut self, input: Input, now: TimeMs, ledger: &mut dyn Ledger) -> Vec<Effect> {
        if self.fault.is_some() {
            return Vec::new();
        }
        self.now = self.now.max(now);
        self.proposed_now = 0;
        match input {
            Input::Start { recovered } => self.start(recovered, ledger),
            Input::Message(message) if self.started => self.on_message(message, ledger),
            Input::Sync { from, message } if self.started => self.on_sync(from, message, ledger),
            Input::Timer(timer) if self.started => self.on_timer(timer, ledger),
            Input::TransactionsAvailable if self.started => self.propose(ledger),
            _ => {}
        }
        if self.dirty {
            self.persist();
        }
        let effects = std::mem::take(&mut self.out);
        self.misbehave(effects)
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn me(&self) -> ValidatorIndex {
        self.me
    }

    pub fn safety(&self) -> &SafetyData {
        &self.safety
    }

    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The last executed block.
    pub fn head(&self) -> &Block {
        &self.head
    }

    /// True while waiting for a new view.
    pub fn changing_view(&self) -> bool {
        self.mode == Mode::ViewChange
    }

    /// A failure of the node itself met while handling the last input;
    /// after one the replica ignores every input.
    pub fn take_fault(&mut self) -> Option<LocalFault> {
        self.fault.take()
    }

    pub fn faulted(&self) -> bool {
        self.fault.is_some()
    }

    /// Records a failure of the node itself; true if `error` was one.
    pub(super) fn local_fault(&mut self, error: LedgerError) -> bool {
        match error {
            LedgerError::Fault(fault) => {
                self.fault = Some(fault);
                true
            }
            LedgerError::Invalid(_) | LedgerError::Unavailable { .. } => false,
        }
    }

    pub(super) fn executed(&self) -> Height {
        self.head.header().height
    }

    /// The low watermark: the stable checkpoint's height.
    pub(super) fn low(&self) -> Height {
        self.safety.stable.checkpoint.height
    }

    /// The high watermark.
    pub(super) fn high(&self) -> Height {
        Height(self.low().0.saturating_add(self.config.watermark_window))
    }

    pub(super) fn primary(&self, view: View) -> ValidatorIndex {
        self.committee.leader(view)
    }

    pub(super) fn address(&self) -> Address {
        self.key.public().into()
    }

    fn start(&mut self, recovered: Option<Box<SafetyData>>, ledger: &mut dyn Ledger) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(safety) = recovered {
            self.restore(*safety);
        }
        self.view_timeout
            .resume(self.now, ledger.has_pending_transactions());
        match self.mode {
            Mode::Normal => {
                self.arm_view_timer();
                self.propose(ledger);
            }
            Mode::ViewChange => {
                let target = self.view;
                self.view_change_to(target, true);
            }
        }
        self.execute(ledger);
    }

    /// Takes back what a crash kept: the view, what was signed, the
    /// P-set, the stable checkpoint and the current view's plan.
    fn restore(&mut self, safety: SafetyData) {
        self.view = safety.view;
        self.mode = if safety.view_changing {
            Mode::ViewChange
        } else {
            Mode::Normal
        };
        let stable = safety.stable.checkpoint;
        if stable.height > self.executed() {
            self.log.set_final(stable.height, stable.block, None);
        }
        self.safety = safety;
    }

    // ----- timers -----

    /// The timeout of the current view (and of a view change's wait).
    pub(super) fn timeout_ms(&self) -> u64 {
        self.view_timeout.current_ms()
    }

    /// The current view's timer length.
    pub fn view_timeout_ms(&self) -> u64 {
        self.timeout_ms()
    }

    /// The view timer fired on an idle replica (no transaction waits and
    /// nothing of this view is accepted above the executed head): the
    /// primary may be waiting out its empty-block delay, so wait that much
    /// longer, once per progress.
    fn extend_for_idle_primary(&mut self, view: View, ledger: &dyn Ledger) -> bool {
        let busy = ledger.has_pending_transactions()
            || self
                .log
                .highest_accepted(view)
                .is_some_and(|h| h > self.executed());
        if busy {
            return false;
        }
        let Some(wait) = self.view_timeout.idle_extension() else {
            return false;
        };
        self.out.push(Effect::ArmTimer {
            timer: Timer::View(view),
            at: self.now.saturating_add(wait),
        });
        true
    }

    /// (Re)arms the current view's progress timer.
    pub(super) fn arm_view_timer(&mut self) {
        self.out.push(Effect::ArmTimer {
            timer: Timer::View(self.view),
            at: self.now.saturating_add(self.timeout_ms()),
        });
    }

    fn on_timer(&mut self, timer: Timer, ledger: &mut dyn Ledger) {
        match timer {
            Timer::View(view) if view == self.view && self.mode == Mode::Normal => {
                if self.extend_for_idle_primary(view, ledger) {
                    return;
                }
                self.resend_checkpoint();
                self.retry_requests();
                self.view_change_to(view.next(), false);
            }
            Timer::ViewChange(view) if view == self.view && self.mode == Mode::ViewChange => {
                self.resend_checkpoint();
                self.retry_requests();
                self.on_view_change_timer();
            }
            Timer::Propose(view) if view == self.view => {
                self.propose_wait.timer_at = None;
                self.propose(ledger);
            }
            Timer::Resend(view) if view == self.view && self.mode == Mode::Normal => {
                self.resend_armed = false;
                self.resend_own();
            }
            _ => {}
        }
    }

    // ----- signing, persistence, forwarding -----

    pub(super) fn sign(&self, payload: Payload) -> SignedMessage {
        sign(&self.committee, &self.key, self.me, payload)
    }

    pub(super) fn persist(&mut self) {
        self.dirty = false;
        let bytes = self.safety_encoder.encode(&self.safety);
        debug_assert_eq!(
            bytes,
            encoding::encode(&self.safety),
            "the piecewise encoding of the safety data differs from postcard's"
        );
        self.out.push(Effect::PersistSafety(EncodedSafety(bytes)));
    }

    /// Sends (to one, or with `None` to all) a message this replica
    /// signed, persisting the safety data it depends on first.
    pub(super) fn send_own(&mut self, to: Option<ValidatorIndex>, message: SignedMessage) {
        if self.dirty {
            self.persist();
        }
        match to {
            Some(to) if to == self.me => {}
            Some(to) => self.out.push(Effect::Send { to, message }),
            None => self.out.push(Effect::Broadcast(message)),
        }
    }

    /// Keeps one of our messages of the current view at `height` for
    /// re-sending until the height is executed, and arms the re-send timer.
    pub(super) fn keep_for_resend(&mut self, height: Height, message: SignedMessage) {
        if height <= self.executed() {
            return;
        }
        let now = self.now;
        let entry = self
            .own_messages
            .entry(height)
            .or_insert_with(|| (now, Vec::new()));
        entry.1.push(message);
        self.arm_resend();
    }

    fn resend_period(&self) -> u64 {
        (self.view_timeout.base_ms() / 4).max(1)
    }

    /// Arms the re-send timer for when the oldest waiting height has waited
    /// a re-send period.
    fn arm_resend(&mut self) {
        if self.resend_armed {
            return;
        }
        let Some(oldest) = self.own_messages.values().map(|(since, _)| *since).min() else {
            return;
        };
        self.resend_armed = true;
        self.out.push(Effect::ArmTimer {
            timer: Timer::Resend(self.view),
            at: oldest.max(self.now).saturating_add(self.resend_period()),
        });
    }

    /// Sends our messages for heights that have waited a re-send period
    /// again, to each replica directly (a gossip layer may refuse the same
    /// bytes twice).
    fn resend_own(&mut self) {
        let executed = self.executed();
        self.own_messages = self.own_messages.split_off(&Height(executed.0 + 1));
        let due = self.now.saturating_sub(self.resend_period());
        let mut messages = Vec::new();
        for (since, kept) in self.own_messages.values_mut() {
            if *since <= due {
                messages.extend(kept.iter().cloned());
                *since = self.now;
            }
        }
        for message in &messages {
            self.send_to_others(message);
        }
        self.arm_resend();
    }

    /// Forgets what was kept for re-sending (a new view).
    pub(super) fn forget_own_messages(&mut self) {
        self.own_messages.clear();
        self.resend_armed = false;
    }

    /// True the first time a message's content is seen (bounded memory).
    pub(super) fn first_time(&mut self, id: Hash) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > SEEN_ENTRIES
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// A new checkpoint of ours (after executing a multiple of K).
    pub(super) fn make_checkpoint(&mut self) {
        let height = self.executed();
        let interval = self.config.checkpoint_interval.max(1);
        if height.0 == 0 || !height.0.is_multiple_of(interval) {
            return;
        }
        let checkpoint = Checkpoint {
            height,
            block: self.head.hash(),
            state_root: self.head.header().state_root,
        };
        let message = self.sign(Payload::Checkpoint(checkpoint));
        self.own_checkpoint = Some(message.clone());
        self.first_time(message.id());
        self.send_own(None, message.clone());
        self.on_checkpoint(message);
    }

    /// Re-sends our latest checkpoint while it is not stable yet (it may
    /// have been lost, and the window cannot move until it is).
    fn resend_checkpoint(&mut self) {
        let Some(message) = self.own_checkpoint.clone() else {
            return;
        };
        if let Payload::Checkpoint(c) = &message.payload
            && c.height > self.low()
        {
            self.send_to_others(&message);
        }
    }

    /// Sends one of our messages again to each other replica directly (a
    /// gossip layer may refuse to publish the same bytes twice).
    pub(super) fn send_to_others(&mut self, message: &SignedMessage) {
        let others: Vec<ValidatorIndex> =
            self.committee.members().filter(|v| *v != self.me).collect();
        for to in others {
            self.out.push(Effect::Send {
                to,
                message: message.clone(),
            });
        }
    }
}
