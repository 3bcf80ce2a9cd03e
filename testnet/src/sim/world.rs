//! One simulated run: n replicas, a virtual clock, an event queue and a
//! network, all driven from one seed.
//!
//! Events are ordered by virtual time, ties broken by the order they were
//! scheduled in ([`EventQueue`]), so a run is a pure function of its
//! scenario and seed. Every random choice (delays,
//! loss, duplication, the client's transfers) comes from seeded streams.
//!
//! The world drives each replica through the consensus seam
//! ([`Protocol`]) and names none of a protocol's own types. Bytes that
//! reach a replica become the protocol's message through
//! [`Protocol::verify`] (or are counted as rejected, by
//! [`RejectReason`](phalanx_consensus::RejectReason)), and the effects
//! the protocol returns are carried out in order. `Persist` writes to the
//! replica's store at once, before any later effect: a crash (which falls
//! between events) therefore always finds the safety data of every message
//! already sent. A crashed replica loses its protocol state, mempool,
//! speculative states and armed timers, and messages that reach it while
//! down are dropped; it restarts from its store's head block and its last
//! persisted safety data ([`Input::Start`]). A replica whose protocol
//! stops with a [`Fault`] is fed nothing more until it restarts.

use super::SimError;
use super::check::{Checker, EvidenceReport};
use super::client::{self, Client};
use super::ledger::SimLedger;
use super::queue::EventQueue;
use super::report::{CheckerKind, RunReport};
use super::rng::Rng;
use super::scenario::{Scenario, TimeMs};
use phalanx_chain::speculative::SharedExecutions;
use phalanx_chain::{
    Block, ConsensusKind, Hash, Height, Justification, Store, ValidatorIndex, VerifiedTxs,
};
use phalanx_consensus::protocol::WorkRequest;
use phalanx_consensus::{
    Channel, Effect, Evidence, Fault, Input, Origin, Outgoing, Protocol, Setup, Tuning,
};
use phalanx_crypto::Keypair;
use phalanx_crypto::maps::HashMap;
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// Certificate checks remembered per run, at most.
const MAX_CACHED_CERTIFICATES: usize = 16_384;
/// Executed blocks whose changes the replicas share, per run, at most.
const MAX_SHARED_EXECUTIONS: usize = 1_024;

/// A protocol instance just started, and what it asks for first.
type Started<P> = (P, Vec<Effect<<P as Protocol>::Timer>>);

/// One message on the simulated wire: the bytes every copy of one send
/// shares (a replica that forwards the message being delivered sends this
/// same wire on), and what [`Protocol::verify`] answered for them once a
/// delivery asked (see [`World::verify`]).
#[derive(Debug)]
struct Wire<P: Protocol> {
    channel: Channel,
    bytes: Vec<u8>,
    verdict: OnceCell<Result<P::Message, P::Rejection>>,
}

impl<P: Protocol> Wire<P> {
    fn new(channel: Channel, bytes: Vec<u8>) -> Rc<Wire<P>> {
        Rc::new(Wire {
            channel,
            bytes,
            verdict: OnceCell::new(),
        })
    }
}

#[derive(Debug)]
enum Event<P: Protocol> {
    Deliver {
        to: ValidatorIndex,
        from: ValidatorIndex,
        wire: Rc<Wire<P>>,
    },
    Timer {
        node: ValidatorIndex,
        incarnation: u32,
        timer: P::Timer,
        generation: u64,
    },
    ClientTick,
    Crash(ValidatorIndex),
    Restart(ValidatorIndex),
    /// Proof of work: replica `node`'s miner finds a block now.
    Mine {
        node: ValidatorIndex,
        incarnation: u32,
    },
}

#[derive(Debug)]
struct Node<P: Protocol> {
    /// The validator it runs as (a twin runs as its original).
    me: ValidatorIndex,
    key: Keypair,
    tuning: Tuning,
    up: bool,
    incarnation: u32,
    /// `None` while down, or after its protocol stopped with a fault.
    replica: Option<P>,
    ledger: SimLedger,
    /// The current arming of each timer; older armings are stale.
    timers: BTreeMap<P::Timer, u64>,
    /// Proof of work: the block its miner is working on.
    work: Option<WorkRequest>,
}

/// A run in progress.
#[derive(Debug)]
pub struct World<P: Protocol> {
    scenario: Scenario,
    context: P::Context,
    /// Whether deliveries of one wire share its verdict (see
    /// [`Scenario::verify_cache`]).
    verify_cache: bool,
    nodes: Vec<Node<P>>,
    queue: EventQueue<Event<P>>,
    generation: u64,
    now: TimeMs,
    end: TimeMs,
    net: Rng,
    client: Client,
    checker: Checker,
    report: RunReport,
    /// Certificate checks of committed blocks, by block hash (every replica
    /// commits the same blocks; the answer depends on the block alone).
    certificates: HashMap<Hash, Result<(), String>>,
    /// Print every event and effect to stderr (`PHALANX_SIM_TRACE=1`).
    trace: bool,
    /// The sender of the message being handled, for [`Effect::Reply`].
    replying_to: Option<ValidatorIndex>,
    /// The message being delivered: a replica that forwards it sends the
    /// same bytes, which then travel as this wire (and share its
    /// verdict).
    delivering: Option<Rc<Wire<P>>>,
    /// When miners find blocks (proof of work).
    mining: Rng,
}

impl<P: Protocol> World<P> {
    /// Sets up a run; fails only if the scenario cannot make a chain or
    /// the protocol refuses it.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<World<P>, SimError> {
        let genesis = client::genesis_with(
            scenario.consensus,
            scenario.validators,
            scenario.block_interval_ms,
            scenario.confirmations,
        )
        .map_err(SimError::Setup)?;
        let context = P::context(&genesis, scenario.unsafe_quorum)
            .map_err(|e| SimError::Setup(e.to_string()))?;
        let verified = Arc::new(VerifiedTxs::default());
        // Shared with the verification cache: both save work, not outcomes.
        let executions = scenario
            .verify_cache
            .then(|| Arc::new(SharedExecutions::new(MAX_SHARED_EXECUTIONS)));
        let nodes = (0..scenario.replicas())
            .map(|i| Self::node(scenario, &genesis, &verified, executions.as_ref(), i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SimError::Setup)?;
        let validators = nodes.iter().map(|n| n.me).collect();
        let faulty = scenario.faulty_validators();
        let checker = Checker::new(validators, faulty, genesis.block().hash());
        Ok(World {
            scenario: scenario.clone(),
            context,
            verify_cache: scenario.verify_cache,
            nodes,
            queue: EventQueue::default(),
            generation: 0,
            now: 0,
            end: scenario.end_ms(),
            net: Rng::stream(seed, "network"),
            client: Client::new(genesis.chain_id.clone(), seed),
            checker,
            report: RunReport {
                seed,
                ..RunReport::default()
            },
            certificates: HashMap::default(),
            trace: std::env::var_os("PHALANX_SIM_TRACE").is_some_and(|v| v != "0"),
            replying_to: None,
            delivering: None,
            mining: Rng::stream(seed, "mining"),
        })
    }

    /// Replica `i`: validator `i`, or for `i >= n` a twin.
    fn node(
        scenario: &Scenario,
        genesis: &phalanx_chain::Genesis,
        verified: &Arc<VerifiedTxs>,
        executions: Option<&Arc<SharedExecutions>>,
        i: usize,
    ) -> Result<Node<P>, String> {
        let mut ledger = SimLedger::new(genesis)
            .map_err(|e| e.to_string())?
            .with_verified(Arc::clone(verified));
        if let Some(executions) = executions {
            ledger = ledger.with_shared_executions(Arc::clone(executions));
        }
        let me = scenario
            .validator_of(i)
            .ok_or_else(|| format!("replica {i} runs as no validator"))?;
        Ok(Node {
            me,
            key: client::validator_key(usize::from(me.0)),
            tuning: scenario.tuning(me),
            up: false,
            incarnation: 0,
            replica: None,
            ledger,
            timers: BTreeMap::new(),
            work: None,
        })
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>7} {}", self.now, line());
        }
    }

    fn schedule(&mut self, at: TimeMs, event: Event<P>) {
        self.queue.push(at, event);
    }

    /// Runs to the end, checks liveness, and reports what the checkers
    /// found.
    pub fn run(mut self) -> RunReport {
        for i in 0..self.nodes.len() {
            self.boot(ValidatorIndex(i as u16));
        }
        self.schedule(self.scenario.tx_interval_ms, Event::ClientTick);
        for c in self.scenario.crashes.clone() {
            self.schedule(c.at_ms, Event::Crash(c.replica));
            if let Some(at) = c.restart_ms {
                self.schedule(at, Event::Restart(c.replica));
            }
        }
        while let Some((at, event)) = self.queue.pop() {
            if at > self.end {
                break;
            }
            self.now = at;
            self.report.events += 1;
            self.step(event);
        }
        self.finish()
    }

    fn finish(mut self) -> RunReport {
        let up: Vec<bool> = self.nodes.iter().map(|n| n.up).collect();
        self.checker.check_liveness(&self.scenario, &up);
        self.report.recovery_ms = self.checker.recovery_ms(&self.scenario, &up);
        self.report.end_ms = self.end;
        self.report.commit_log_hash = self.checker.commit_log_hash();
        self.report.committed_height = self.checker.committed_height();
        self.report.max_view = (0..self.nodes.len())
            .filter(|i| self.checker.is_honest(ValidatorIndex(*i as u16)))
            .filter_map(|i| self.nodes.get(i)?.replica.as_ref().map(|r| r.status().view))
            .max()
            .unwrap_or(0);
        if P::KIND == ConsensusKind::Pow {
            self.report.chain_blocks_by_miner = self.chain_by_miner();
        }
        let (violations, counts) = self.checker.into_violations();
        self.report.violations = violations;
        self.report.violation_counts = counts;
        self.report
    }

    /// The longest chain any replica holds when the run ends (an honest
    /// one's if it is as long), its blocks counted by miner: what the
    /// network settles on if everything withheld were published now, so a
    /// selfish miner's lead at the end counts as it would in the long run.
    fn chain_by_miner(&self) -> BTreeMap<u16, u64> {
        let miners: HashMap<phalanx_chain::Address, u16> = (0..self.scenario.validators)
            .map(|i| (client::miner_address(i), i as u16))
            .collect();
        let best = (0..self.nodes.len())
            .filter_map(|i| {
                let node = self.nodes.get(i)?;
                let honest = self.checker.is_honest(ValidatorIndex(i as u16));
                Some((node.ledger.head().ok()?.height(), honest, i))
            })
            .max()
            .map(|(height, _, i)| (height, i));
        let mut counts = BTreeMap::new();
        let Some(node) = best.and_then(|(_, i)| self.nodes.get(i)) else {
            return counts;
        };
        let store = node.ledger.store();
        let mut height = 1;
        while let Ok(Some(block)) = store.block_at(Height(height)) {
            if let Some(miner) = miners.get(&block.header().proposer) {
                *counts.entry(*miner).or_default() += 1;
            }
            height += 1;
        }
        counts
    }

    fn step(&mut self, event: Event<P>) {
        match event {
            Event::Deliver { to, from, wire } => {
                self.delivering = Some(Rc::clone(&wire));
                self.deliver(to, from, &wire);
                self.delivering = None;
            }
            Event::Timer {
                node,
                incarnation,
                timer,
                generation,
            } => self.fire(node, incarnation, timer, generation),
            Event::ClientTick => self.client_tick(),
            Event::Crash(node) => self.crash(node),
            Event::Restart(node) => self.boot(node),
            Event::Mine { node, incarnation } => self.mine(node, incarnation),
        }
    }

    fn node_mut(&mut self, index: ValidatorIndex) -> Option<&mut Node<P>> {
        self.nodes.get_mut(usize::from(index.0))
    }

    fn deliver(&mut self, to: ValidatorIndex, from: ValidatorIndex, wire: &Wire<P>) {
        if self.partitioned(from, to) {
            self.report.dropped_partition += 1;
            return;
        }
        let channel = wire.channel;
        self.log(|| format!("{to} <- {from}: {}", P::describe(channel, &wire.bytes)));
        let Some(sender) = self.nodes.get(usize::from(from.0)).map(|n| n.me) else {
            return;
        };
        let Some(node) = self.nodes.get(usize::from(to.0)) else {
            return;
        };
        if !node.up || node.replica.is_none() {
            self.report.dropped_down += 1;
            return;
        }
        self.report.delivered += 1;
        match self.verify(sender, wire) {
            Ok(message) => {
                self.replying_to = Some(from);
                self.handle(to, Input::Message(message));
                self.replying_to = None;
            }
            Err(rejection) => {
                if std::env::var_os("PHALANX_SIM_TRACE").is_some() {
                    eprintln!("rejected: {rejection}");
                }
                let reason = P::reject_reason(&rejection).label();
                *self.report.rejected.entry(reason).or_default() += 1;
            }
        }
    }

    /// [`Protocol::verify`], answered from the wire's verdict for
    /// consensus bytes delivered before: a consensus message carries its
    /// author, so whether it verifies depends on its bytes alone, whoever
    /// passed it on. Catch-up traffic is verified every time (it depends
    /// on its sender). The same bytes sent again on another wire (a
    /// re-send after a timeout) are verified again: rare enough that a
    /// run-wide cache by hash cost more than it saved.
    fn verify(&self, sender: ValidatorIndex, wire: &Wire<P>) -> Result<P::Message, P::Rejection> {
        let (channel, bytes) = (wire.channel, wire.bytes.as_slice());
        if !self.verify_cache || channel != Channel::Consensus {
            return P::verify(&self.context, Some(sender), channel, bytes);
        }
        wire.verdict
            .get_or_init(|| P::verify(&self.context, Some(sender), channel, bytes))
            .clone()
    }

    /// Hands `input` to replica `index`'s protocol and carries out what it
    /// answers. A fault stops the replica.
    fn handle(&mut self, index: ValidatorIndex, input: Input<P::Message, P::Timer>) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(usize::from(index.0)) else {
            return;
        };
        let Some(replica) = node.replica.as_mut() else {
            return;
        };
        match replica.handle(input, now, &mut node.ledger) {
            Ok(effects) => self.apply(index, effects),
            Err(fault) => self.halt(index, &fault),
        }
    }

    /// The protocol said it cannot go on deciding safely: it is fed
    /// nothing more (until the replica restarts), and the run fails, since
    /// the simulator's stores never fail.
    fn halt(&mut self, index: ValidatorIndex, fault: &Fault) {
        self.log(|| format!("{index} halts: {fault}"));
        if let Some(node) = self.node_mut(index) {
            node.replica = None;
            node.timers.clear();
        }
        let detail = format!("replica {index} stopped: {fault}");
        // A proof-of-work node that finds its final blocks outworked has
        // seen agreement broken (the network's heaviest chain disagrees
        // with what it declared final); any other fault is the run's.
        let kind = match fault {
            Fault::FinalityViolated { .. } => CheckerKind::Agreement,
            _ => CheckerKind::Setup,
        };
        self.checker.violation(kind, detail);
    }

    fn fire(&mut self, index: ValidatorIndex, incarnation: u32, timer: P::Timer, generation: u64) {
        let Some(node) = self.node_mut(index) else {
            return;
        };
        if !node.up || node.incarnation != incarnation {
            return;
        }
        if node.timers.get(&timer) != Some(&generation) {
            return;
        }
        node.timers.remove(&timer);
        self.log(|| format!("{index} timer {timer:?}"));
        self.handle(index, Input::Timer(timer));
    }

    fn client_tick(&mut self) {
        if let Some(tx) = self.client.next_transfer() {
            for node in self.nodes.iter_mut().filter(|n| n.up) {
                node.ledger.submit(tx.clone());
            }
        }
        let next = self.now.saturating_add(self.scenario.tx_interval_ms);
        if next <= self.end {
            self.schedule(next, Event::ClientTick);
        }
    }

    fn crash(&mut self, index: ValidatorIndex) {
        self.log(|| format!("{index} crashes"));
        if let Some(node) = self.node_mut(index) {
            node.up = false;
            node.incarnation += 1;
            node.replica = None;
            node.timers.clear();
            node.work = None;
            node.ledger.crash();
        }
    }

    /// Starts (or restarts) a replica from its store: the head block and the
    /// last safety data it persisted.
    fn boot(&mut self, index: ValidatorIndex) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(usize::from(index.0)) else {
            return;
        };
        match Self::start(&self.context, node, now) {
            Ok((replica, effects)) => {
                if self.trace {
                    eprintln!("{now:>7} {index} starts at view {}", replica.status().view);
                }
                node.replica = Some(replica);
                node.up = true;
                let incarnation = node.incarnation;
                self.apply(index, effects);
                if P::KIND == ConsensusKind::Pow {
                    self.schedule_mining(index, incarnation);
                }
            }
            Err(e) => self.checker.violation(
                CheckerKind::Setup,
                format!("replica {index} could not start: {e}"),
            ),
        }
    }

    /// A new protocol instance for `node` and what it asks for first.
    fn start(context: &P::Context, node: &mut Node<P>, now: TimeMs) -> Result<Started<P>, String> {
        let recovered = node
            .ledger
            .store()
            .safety_data(P::SAFETY_KEY)
            .map_err(|e| e.to_string())?;
        let head = node.ledger.head_block()?;
        let setup = Setup {
            key: node.key.clone(),
            tuning: node.tuning.clone(),
        };
        let mut replica = P::new(context, setup, head).map_err(|e| e.to_string())?;
        let effects = replica
            .handle(Input::Start { recovered }, now, &mut node.ledger)
            .map_err(|e| e.to_string())?;
        Ok((replica, effects))
    }

    /// Carries out a replica's effects in order.
    fn apply(&mut self, index: ValidatorIndex, effects: Vec<Effect<P::Timer>>) {
        for effect in effects {
            self.log(|| format!("{index} -> {}", describe_effect::<P>(&effect)));
            match effect {
                Effect::Persist(bytes) => self.persist(index, &bytes),
                Effect::Send { to, message } => self.send(index, Some(to), message),
                Effect::Broadcast(message) => self.send(index, None, message),
                Effect::Reply(message) => {
                    if let Some(to) = self.replying_to {
                        let origin = message.origin;
                        let wire = Wire::new(message.channel, message.bytes);
                        self.transmit(index, to, origin, &wire);
                    }
                }
                Effect::Extend {
                    block,
                    finalized: true,
                } => self.commit(index, &block),
                Effect::ArmTimer { timer, at } => self.arm(index, timer, at),
                Effect::CancelTimer(timer) => {
                    if let Some(node) = self.node_mut(index) {
                        node.timers.remove(&timer);
                    }
                }
                Effect::Evidence(evidence) => self.evidence(index, &evidence),
                Effect::Extend {
                    block,
                    finalized: false,
                } => self.extend(index, &block),
                Effect::Finalize(height) => self.finalize(index, height),
                Effect::Revert { ancestor } => self.revert(index, &ancestor),
                Effect::RequestWork(work) => {
                    if let Some(node) = self.node_mut(index) {
                        node.work = Some(work);
                    }
                }
            }
        }
    }

    /// Proof of work: the next time replica `index`'s miner finds a block.
    /// Mining is memoryless: a miner with share s of the hash power finds
    /// blocks as a Poisson process of rate s per block interval, so its
    /// wait is exponential with mean interval / s, and the network as a
    /// whole finds one block per interval on average.
    fn schedule_mining(&mut self, index: ValidatorIndex, incarnation: u32) {
        let share = self.scenario.hash_share(index);
        if share <= 0.0 {
            return;
        }
        let mean = self.scenario.block_interval_ms as f64 / share;
        let wait = self.mining.exponential(mean);
        let at = self.now.saturating_add(wait.round() as u64);
        self.schedule(
            at,
            Event::Mine {
                node: index,
                incarnation,
            },
        );
    }

    /// Replica `index`'s miner found a block: its current work, sealed now
    /// (the timestamp raised to the virtual clock, the nonce searched
    /// against the simulation's easy target), goes back to its protocol.
    fn mine(&mut self, index: ValidatorIndex, incarnation: u32) {
        let now = self.now;
        let Some(node) = self.node_mut(index) else {
            return;
        };
        if !node.up || node.incarnation != incarnation {
            return;
        }
        let work = node.work.clone();
        self.schedule_mining(index, incarnation);
        let Some(work) = work else {
            return;
        };
        let mut block = *work.template;
        block.header_mut().timestamp_ms = block.header().timestamp_ms.max(now);
        let Some(block) = seal(block) else {
            return;
        };
        self.report.mined += 1;
        self.log(|| {
            format!(
                "{index} mined height {} {}",
                block.header().height,
                block.hash()
            )
        });
        self.handle(index, Input::Mined(Box::new(block)));
    }

    /// Proof of work: appends a block (not final yet) to replica `index`'s
    /// chain.
    fn extend(&mut self, index: ValidatorIndex, block: &Block) {
        let Some(node) = self.node_mut(index) else {
            return;
        };
        if let Err(e) = node.ledger.extend(block) {
            let detail = format!("replica {index} could not extend its chain: {e}");
            self.checker.violation(CheckerKind::Setup, detail);
        }
    }

    /// Proof of work: rolls replica `index`'s chain back to `ancestor`.
    fn revert(&mut self, index: ValidatorIndex, ancestor: &Hash) {
        let honest = self.checker.is_honest(index);
        let Some(node) = self.node_mut(index) else {
            return;
        };
        match node.ledger.revert(ancestor) {
            Ok(removed) => {
                if honest {
                    self.report.reorgs += 1;
                    self.report.max_reorg_depth =
                        self.report.max_reorg_depth.max(removed.len() as u64);
                }
            }
            Err(e) => {
                let detail = format!("replica {index} could not revert to {ancestor}: {e}");
                self.checker.violation(CheckerKind::Setup, detail);
            }
        }
    }

    /// Proof of work: blocks up to `height` are final at replica `index`;
    /// each goes to the checker as a commit (so agreement is checked on
    /// final blocks, as for the committees), its latency the time since
    /// it was mined.
    fn finalize(&mut self, index: ValidatorIndex, height: Height) {
        let Some(node) = self.nodes.get_mut(usize::from(index.0)) else {
            return;
        };
        let blocks = match node.ledger.finalize(height) {
            Ok(blocks) => blocks,
            Err(e) => {
                let detail = format!("replica {index} could not finalize {height}: {e}");
                self.checker.violation(CheckerKind::Setup, detail);
                return;
            }
        };
        for block in blocks {
            let store = node.ledger.store();
            let lookup = |h: &Hash| store.block(h).ok().flatten();
            let certificate =
                P::check_finalized(&self.context, &block, &lookup).map_err(|e| e.to_string());
            if self.checker.is_honest(index) {
                let latency = self.now.saturating_sub(block.header().timestamp_ms);
                self.report.commit_latency_ms.record(latency);
            }
            self.checker
                .on_commit(index, self.now, &block, certificate, Ok(()));
        }
    }

    /// Sends to every replica of validator `to` (both copies of a twin), or
    /// with `None` to every replica of every other validator.
    fn send(&mut self, index: ValidatorIndex, to: Option<ValidatorIndex>, message: Outgoing) {
        let Some(me) = self.nodes.get(usize::from(index.0)).map(|n| n.me) else {
            return;
        };
        let origin = message.origin;
        let wire = match &self.delivering {
            Some(delivering)
                if origin == Origin::Forwarded
                    && delivering.channel == message.channel
                    && delivering.bytes == message.bytes =>
            {
                Rc::clone(delivering)
            }
            _ => Wire::new(message.channel, message.bytes),
        };
        let targets: Vec<ValidatorIndex> = (0..self.nodes.len())
            .filter(|i| {
                let v = self.nodes.get(*i).map(|n| n.me);
                v != Some(me) && to.is_none_or(|to| v == Some(to))
            })
            .map(|i| ValidatorIndex(i as u16))
            .collect();
        for target in targets {
            self.transmit(index, target, origin, &wire);
        }
    }

    fn persist(&mut self, index: ValidatorIndex, bytes: &[u8]) {
        let Some(node) = self.node_mut(index) else {
            return;
        };
        if let Err(e) = node.ledger.store().put_safety_data(P::SAFETY_KEY, bytes) {
            let detail = format!("replica {index} could not persist safety data: {e}");
            self.checker.violation(CheckerKind::Setup, detail);
        }
    }

    fn arm(&mut self, index: ValidatorIndex, timer: P::Timer, at: TimeMs) {
        self.generation += 1;
        let generation = self.generation;
        let at = at.max(self.now);
        let Some(node) = self.node_mut(index) else {
            return;
        };
        node.timers.insert(timer, generation);
        let incarnation = node.incarnation;
        self.schedule(
            at,
            Event::Timer {
                node: index,
                incarnation,
                timer,
                generation,
            },
        );
    }

    /// Counts evidence and has the checker judge whether it proves what it
    /// claims, about whom.
    fn evidence(&mut self, index: ValidatorIndex, evidence: &Evidence) {
        *self.report.evidence.entry(evidence.kind).or_default() += 1;
        let report = EvidenceReport {
            kind: evidence.kind,
            culprit: evidence.culprit,
            proof_checks: P::check_evidence(&self.context, evidence),
        };
        self.checker.on_evidence(index, &report);
    }

    /// A block final at replica `index`: its certificate is checked
    /// ([`Protocol::check_finalized`], against the blocks the replica
    /// finalized before it), then the replica's ledger executes and stores
    /// it.
    fn commit(&mut self, index: ValidatorIndex, block: &Block) {
        let hash = block.hash();
        let Some(node) = self.nodes.get_mut(usize::from(index.0)) else {
            return;
        };
        let certificate = match self.certificates.get(&hash) {
            Some(known) => known.clone(),
            None => {
                let store = node.ledger.store();
                let lookup = |h: &Hash| store.block(h).ok().flatten();
                let checked =
                    P::check_finalized(&self.context, block, &lookup).map_err(|e| e.to_string());
                if self.certificates.len() >= MAX_CACHED_CERTIFICATES {
                    self.certificates.clear();
                }
                self.certificates.insert(hash, checked.clone());
                checked
            }
        };
        let applied = node.ledger.commit(block);
        if self.checker.is_honest(index) {
            let latency = self.now.saturating_sub(block.header().timestamp_ms);
            self.report.commit_latency_ms.record(latency);
        }
        self.checker
            .on_commit(index, self.now, block, certificate, applied);
    }

    fn partitioned(&self, a: ValidatorIndex, b: ValidatorIndex) -> bool {
        self.scenario
            .partitions
            .iter()
            .any(|p| p.separates(a, b, self.now))
    }

    /// Puts one copy of a message on the link `from -> to`: counted, then
    /// cut by a partition, lost, delayed, or duplicated.
    fn transmit(
        &mut self,
        from: ValidatorIndex,
        to: ValidatorIndex,
        origin: Origin,
        wire: &Rc<Wire<P>>,
    ) {
        let traffic = self.report.traffic.entry(origin).or_default();
        traffic.messages += 1;
        traffic.bytes += wire.bytes.len() as u64;
        if self.partitioned(from, to) {
            self.report.dropped_partition += 1;
            return;
        }
        if self.net.chance(self.scenario.loss) {
            self.report.dropped_loss += 1;
            return;
        }
        let copies = if self.net.chance(self.scenario.dup) {
            self.report.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self
                .net
                .range_inclusive(self.scenario.delay.min_ms, self.scenario.delay.max_ms);
            let event = Event::Deliver {
                to,
                from,
                wire: Rc::clone(wire),
            };
            self.schedule(self.now.saturating_add(delay), event);
        }
    }
}

/// Searches the nonce of a proof-of-work block until its hash meets its
/// target (two tries on average at the simulation's target).
fn seal(mut block: Block) -> Option<Block> {
    let target = block.header().pow_seal()?.target.target().ok()?;
    for nonce in 0..u64::MAX {
        if let Justification::ProofOfWork(seal) = &mut block.header_mut().justification {
            seal.nonce = nonce;
        }
        if phalanx_chain::pow::meets(&block.header().pow_hash(), &target) {
            return Some(block);
        }
    }
    None
}

/// One line for a trace (and for a setup violation).
fn describe_effect<P: Protocol>(effect: &Effect<P::Timer>) -> String {
    let block_line =
        |block: &Block| format!("height {} block {}", block.header().height, block.hash());
    match effect {
        Effect::Persist(bytes) => format!("persist {} bytes", bytes.len()),
        Effect::Send { to, message } => {
            format!(
                "send to {to}: {}",
                P::describe(message.channel, &message.bytes)
            )
        }
        Effect::Broadcast(message) => {
            format!(
                "broadcast: {}",
                P::describe(message.channel, &message.bytes)
            )
        }
        Effect::Reply(message) => {
            format!("reply: {}", P::describe(message.channel, &message.bytes))
        }
        Effect::Extend {
            block,
            finalized: true,
        } => format!("commit {}", block_line(block)),
        Effect::Extend {
            block,
            finalized: false,
        } => format!("extend the chain with {} (not final)", block_line(block)),
        Effect::Finalize(height) => format!("finalize up to height {height}"),
        Effect::Revert { ancestor } => format!("revert to {ancestor}"),
        Effect::ArmTimer { timer, at } => format!("arm {timer:?} at {at}"),
        Effect::CancelTimer(timer) => format!("cancel {timer:?}"),
        Effect::RequestWork(work) => format!("mine on {}", work.parent),
        Effect::Evidence(e) => format!("evidence {} by {}", e.kind, e.culprit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::{ConsensusKind, Genesis, Height, StoreError};
    use phalanx_consensus::{
        Ledger, LocalFault, Origin, ProofError, RejectReason, SetupError, Status,
    };
    use std::cell::Cell;

    thread_local! {
        /// Calls of `Scripted::verify` on this thread.
        static VERIFIED: Cell<usize> = const { Cell::new(0) };
    }

    #[derive(Debug, Clone, thiserror::Error)]
    #[error("never refused")]
    struct Never;

    /// Asks for proof of work's effects at start.
    const POW_EFFECTS: u8 = 0;
    /// Arms a timer and broadcasts at start; faults when the timer fires.
    const FAULT_ON_TIMER: u8 = 1;
    /// Broadcasts the same bytes on both channels at start.
    const BROADCAST_BOTH: u8 = 2;

    /// A protocol that follows a script (`PLAN`), to see the world carry
    /// out what protocols may ask of it.
    #[derive(Debug)]
    struct Scripted<const PLAN: u8>;

    fn message(channel: Channel) -> Outgoing {
        Outgoing {
            channel,
            origin: Origin::Authored,
            kind: "scripted",
            bytes: vec![7],
        }
    }

    impl<const PLAN: u8> Protocol for Scripted<PLAN> {
        type Context = ();
        type Message = Channel;
        type Timer = ();
        type Rejection = Never;

        const KIND: ConsensusKind = ConsensusKind::Hotstuff;
        const SAFETY_KEY: &'static [u8] = b"scripted/safety";

        fn context(_: &Genesis, _: Option<usize>) -> Result<(), SetupError> {
            Ok(())
        }

        fn new(_: &(), _: Setup, _: Block) -> Result<Self, SetupError> {
            Ok(Scripted)
        }

        fn verify(
            _: &(),
            _: Option<ValidatorIndex>,
            channel: Channel,
            _: &[u8],
        ) -> Result<Channel, Never> {
            VERIFIED.with(|v| v.set(v.get() + 1));
            Ok(channel)
        }

        fn reject_reason(_: &Never) -> RejectReason {
            RejectReason::Undecodable
        }

        fn message_kind(_: &Channel) -> &'static str {
            "scripted"
        }

        fn handle(
            &mut self,
            input: Input<Channel, ()>,
            _: TimeMs,
            _: &mut dyn Ledger,
        ) -> Result<Vec<Effect<()>>, Fault> {
            Ok(match (PLAN, input) {
                (POW_EFFECTS, Input::Start { .. }) => vec![
                    Effect::Finalize(Height(1)),
                    Effect::Revert {
                        ancestor: Hash::ZERO,
                    },
                ],
                (FAULT_ON_TIMER, Input::Start { .. }) => vec![
                    Effect::ArmTimer { timer: (), at: 0 },
                    Effect::Broadcast(message(Channel::Consensus)),
                ],
                (FAULT_ON_TIMER, Input::Timer(())) => {
                    return Err(Fault::Local(LocalFault::Storage(StoreError::NoHead)));
                }
                (BROADCAST_BOTH, Input::Start { .. }) => vec![
                    Effect::Broadcast(message(Channel::Consensus)),
                    Effect::Broadcast(message(Channel::Sync)),
                ],
                _ => Vec::new(),
            })
        }

        fn status(&self) -> Status {
            Status {
                view: 0,
                phase: "scripted",
                unchecked_drops: 0,
                view_timeout_ms: None,
            }
        }

        fn prove_final(_: &(), _: &Block, _: &[Block]) -> Result<usize, ProofError> {
            Ok(0)
        }

        fn check_finalized(
            _: &(),
            _: &Block,
            _: &dyn Fn(&Hash) -> Option<Block>,
        ) -> Result<(), ProofError> {
            Ok(())
        }

        fn check_evidence(_: &(), _: &Evidence) -> bool {
            false
        }
    }

    /// A short run of four replicas of `P`.
    fn run<P: Protocol>(verify_cache: bool) -> RunReport {
        let mut s = Scenario::new(4);
        s.duration_ms = 1_000;
        s.liveness_bound_ms = 1_000;
        s.verify_cache = verify_cache;
        VERIFIED.with(|v| v.set(0));
        World::<P>::new(&s, 1).unwrap().run()
    }

    #[test]
    fn impossible_finalizations_and_reverts_fail_the_run_as_setup() {
        let report = run::<Scripted<POW_EFFECTS>>(true);
        assert_eq!(report.count(CheckerKind::Setup), 8);
        let detail = &report.violations[0].detail;
        assert!(
            detail.starts_with("replica 0 could not finalize 1: "),
            "{detail}"
        );
    }

    #[test]
    fn a_replica_that_faults_is_fed_nothing_more() {
        let report = run::<Scripted<FAULT_ON_TIMER>>(true);
        assert_eq!(report.count(CheckerKind::Setup), 4);
        let detail = &report.violations[0].detail;
        assert!(
            detail.starts_with("replica 0 stopped: storage failed"),
            "{detail}"
        );
        // Every replica halted at 0 ms, before any copy of the broadcasts
        // (sent at 0 ms, 5 to 50 ms on the way) reached it.
        assert_eq!((report.delivered, report.dropped_down), (0, 12));
    }

    #[test]
    fn each_consensus_send_is_verified_once_and_catch_up_bytes_every_time() {
        let report = run::<Scripted<BROADCAST_BOTH>>(true);
        assert_eq!(report.delivered, 24);
        // Four sends on each channel, three copies each: the consensus
        // sends once each (their copies share the verdict), every copy of
        // the catch-up ones.
        assert_eq!(VERIFIED.with(Cell::get), 4 + 12);
        run::<Scripted<BROADCAST_BOTH>>(false);
        assert_eq!(VERIFIED.with(Cell::get), 24);
        let authored = report.traffic.get(&Origin::Authored).copied();
        assert_eq!(authored.map(|t| (t.messages, t.bytes)), Some((24, 24)));
    }
}
