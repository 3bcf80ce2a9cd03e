//! One simulated run: n replicas, a virtual clock, an event queue and a
//! network, all driven from one seed.
//!
//! Events are ordered by (virtual time, sequence number): the sequence
//! number breaks ties in the order events were scheduled, so a run is a
//! pure function of its scenario and seed. Every random choice (delays,
//! loss, duplication, the client's transfers) comes from seeded streams.
//!
//! A replica's actions are carried out in order. `Persist` writes to the
//! replica's store at once, before any later action: a crash (which falls
//! between events) therefore always finds the safety data of every message
//! already sent. A crashed replica loses its protocol state, mempool,
//! speculative states and armed timers, and messages that reach it while
//! down are dropped; it restarts from its store's head block and its last
//! persisted safety data.

use super::check::Checker;
use super::client::{self, Client};
use super::ledger::SimLedger;
use super::protocol::{Action, Channel, NodeSetup, Outgoing, Protocol};
use super::report::{CheckerKind, RunReport};
use super::rng::Rng;
use super::scenario::{Scenario, TimeMs};
use phalanx_chain::{Genesis, Hash, Store, ValidatorIndex};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::rc::Rc;

/// Certificate checks remembered per run, at most.
const MAX_CACHED_CERTIFICATES: usize = 16_384;

#[derive(Debug)]
enum Event<T> {
    Deliver {
        to: ValidatorIndex,
        from: ValidatorIndex,
        channel: Channel,
        bytes: Rc<[u8]>,
    },
    Timer {
        node: ValidatorIndex,
        incarnation: u32,
        timer: T,
        generation: u64,
    },
    ClientTick,
    Crash(ValidatorIndex),
    Restart(ValidatorIndex),
}

#[derive(Debug)]
struct Scheduled<T> {
    at: TimeMs,
    seq: u64,
    event: Event<T>,
}

impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Scheduled<T> {}

impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Scheduled<T> {
    /// Reversed, so the max-heap pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Debug)]
struct Node<P: Protocol> {
    setup: NodeSetup,
    up: bool,
    incarnation: u32,
    replica: Option<P>,
    ledger: SimLedger,
    /// The current arming of each timer; older armings are stale.
    timers: BTreeMap<P::Timer, u64>,
}

/// A run in progress.
#[derive(Debug)]
pub struct World<P: Protocol> {
    scenario: Scenario,
    shared: P::Shared,
    nodes: Vec<Node<P>>,
    queue: BinaryHeap<Scheduled<P::Timer>>,
    seq: u64,
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
    /// Print every event and action to stderr (`PHALANX_SIM_TRACE=1`).
    trace: bool,
}

impl<P: Protocol> World<P> {
    /// Sets up a run; fails only if the scenario cannot make a chain.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<World<P>, String> {
        let genesis = client::genesis(scenario.consensus, scenario.validators)?;
        let shared = P::shared(&genesis, scenario.verify_cache, scenario.unsafe_quorum)?;
        let nodes = (0..scenario.replicas())
            .map(|i| Self::node(scenario, &genesis, i))
            .collect::<Result<Vec<_>, _>>()?;
        let validators = nodes.iter().map(|n| n.setup.me).collect();
        let faulty = scenario.faulty_validators();
        let checker = Checker::new(validators, faulty, genesis.block().hash());
        Ok(World {
            scenario: scenario.clone(),
            shared,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
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
            certificates: HashMap::new(),
            trace: std::env::var_os("PHALANX_SIM_TRACE").is_some_and(|v| v != "0"),
        })
    }

    /// Replica `i`: validator `i`, or for `i >= n` a twin.
    fn node(scenario: &Scenario, genesis: &Genesis, i: usize) -> Result<Node<P>, String> {
        let me = scenario
            .validator_of(i)
            .ok_or_else(|| format!("replica {i} runs as no validator"))?;
        let setup = NodeSetup {
            me,
            key: client::validator_key(usize::from(me.0)),
            byzantine: scenario.byzantine.get(&me).copied(),
            base_timeout_ms: scenario.base_timeout_ms,
            max_timeout_ms: scenario.max_timeout_ms,
            forward: scenario.forward,
        };
        Ok(Node {
            setup,
            up: false,
            incarnation: 0,
            replica: None,
            ledger: SimLedger::new(genesis).map_err(|e| e.to_string())?,
            timers: BTreeMap::new(),
        })
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>7} {}", self.now, line());
        }
    }

    fn schedule(&mut self, at: TimeMs, event: Event<P::Timer>) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// Runs to the end and checks liveness.
    pub fn run(mut self) -> (RunReport, Checker) {
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
        while let Some(next) = self.queue.pop() {
            if next.at > self.end {
                break;
            }
            self.now = next.at;
            self.report.events += 1;
            self.step(next.event);
        }
        self.finish()
    }

    fn finish(mut self) -> (RunReport, Checker) {
        let up: Vec<bool> = self.nodes.iter().map(|n| n.up).collect();
        self.checker.check_liveness(&self.scenario, &up);
        self.report.recovery_ms = self.checker.recovery_ms(&self.scenario, &up);
        self.report.end_ms = self.end;
        self.report.commit_log_hash = self.checker.commit_log_hash();
        self.report.committed_height = self.checker.committed_height();
        self.report.max_view = (0..self.nodes.len())
            .filter(|i| self.checker.is_honest(ValidatorIndex(*i as u16)))
            .filter_map(|i| self.nodes.get(i)?.replica.as_ref().map(P::view))
            .max()
            .unwrap_or(0);
        (self.report, self.checker)
    }

    fn step(&mut self, event: Event<P::Timer>) {
        match event {
            Event::Deliver {
                to,
                from,
                channel,
                bytes,
            } => self.deliver(to, from, channel, &bytes),
            Event::Timer {
                node,
                incarnation,
                timer,
                generation,
            } => self.fire(node, incarnation, timer, generation),
            Event::ClientTick => self.client_tick(),
            Event::Crash(node) => self.crash(node),
            Event::Restart(node) => self.boot(node),
        }
    }

    fn node_mut(&mut self, index: ValidatorIndex) -> Option<&mut Node<P>> {
        self.nodes.get_mut(usize::from(index.0))
    }

    fn deliver(
        &mut self,
        to: ValidatorIndex,
        from: ValidatorIndex,
        channel: Channel,
        bytes: &[u8],
    ) {
        if self.partitioned(from, to) {
            self.report.dropped_partition += 1;
            return;
        }
        self.log(|| format!("{to} <- {from}: {}", P::describe(channel, bytes)));
        let now = self.now;
        let Some(sender) = self.nodes.get(usize::from(from.0)).map(|n| n.setup.me) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(usize::from(to.0)) else {
            return;
        };
        let Some(replica) = node.replica.as_mut().filter(|_| node.up) else {
            self.report.dropped_down += 1;
            return;
        };
        self.report.delivered += 1;
        match replica.deliver(
            &mut self.shared,
            sender,
            channel,
            bytes,
            now,
            &mut node.ledger,
        ) {
            Ok(actions) => self.apply(to, actions),
            Err(rejected) => *self.report.rejected.entry(rejected.0).or_default() += 1,
        }
    }

    fn fire(&mut self, index: ValidatorIndex, incarnation: u32, timer: P::Timer, generation: u64) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(usize::from(index.0)) else {
            return;
        };
        if !node.up || node.incarnation != incarnation {
            return;
        }
        if node.timers.get(&timer) != Some(&generation) {
            return;
        }
        node.timers.remove(&timer);
        if self.trace {
            eprintln!("{now:>7} {index} timer {timer:?}");
        }
        let Some(replica) = node.replica.as_mut() else {
            return;
        };
        let actions = replica.fire(&mut self.shared, timer, now, &mut node.ledger);
        self.apply(index, actions);
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
        let recovered = node.ledger.store().safety_data(P::SAFETY_KEY);
        let booted = match (node.ledger.head_block(), recovered) {
            (Ok(head), Ok(recovered)) => P::boot(
                &mut self.shared,
                &node.setup,
                head,
                recovered.as_deref(),
                now,
                &mut node.ledger,
            ),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(e.to_string()),
        };
        match booted {
            Ok((replica, actions)) => {
                if self.trace {
                    eprintln!("{now:>7} {index} starts at view {}", replica.view());
                }
                node.replica = Some(replica);
                node.up = true;
                self.apply(index, actions);
            }
            Err(e) => self.checker.violation(
                CheckerKind::Setup,
                format!("replica {index} could not start: {e}"),
            ),
        }
    }

    /// Carries out a replica's actions in order.
    fn apply(&mut self, index: ValidatorIndex, actions: Vec<Action<P::Timer>>) {
        for action in actions {
            if self.trace {
                self.log(|| format!("{index} -> {}", describe_action::<P>(&action)));
            }
            match action {
                Action::Persist(bytes) => self.persist(index, &bytes),
                Action::Send { to, message } => self.send(index, Some(to), &message),
                Action::Broadcast(message) => self.send(index, None, &message),
                Action::Commit(block) => self.commit(index, &block),
                Action::ArmTimer { timer, at } => self.arm(index, timer, at),
                Action::CancelTimer(timer) => {
                    if let Some(node) = self.node_mut(index) {
                        node.timers.remove(&timer);
                    }
                }
                Action::Evidence(evidence) => {
                    *self.report.evidence.entry(evidence.kind).or_default() += 1;
                    self.checker.on_evidence(index, &evidence);
                }
            }
        }
    }

    /// Sends to every replica of validator `to` (both copies of a twin), or
    /// with `None` to every replica of every other validator.
    fn send(&mut self, index: ValidatorIndex, to: Option<ValidatorIndex>, message: &Outgoing) {
        let Some(me) = self.nodes.get(usize::from(index.0)).map(|n| n.setup.me) else {
            return;
        };
        let bytes: Rc<[u8]> = message.bytes.as_slice().into();
        let targets: Vec<ValidatorIndex> = (0..self.nodes.len())
            .filter(|i| {
                let v = self.nodes.get(*i).map(|n| n.setup.me);
                v != Some(me) && to.is_none_or(|to| v == Some(to))
            })
            .map(|i| ValidatorIndex(i as u16))
            .collect();
        for target in targets {
            self.transmit(index, target, message, &bytes);
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

    fn commit(&mut self, index: ValidatorIndex, block: &phalanx_chain::Block) {
        let hash = block.hash();
        let certificate = match self.certificates.get(&hash) {
            Some(known) => known.clone(),
            None => {
                let checked = P::check_certificate(&self.shared, block);
                if self.certificates.len() >= MAX_CACHED_CERTIFICATES {
                    self.certificates.clear();
                }
                self.certificates.insert(hash, checked.clone());
                checked
            }
        };
        let Some(node) = self.nodes.get_mut(usize::from(index.0)) else {
            return;
        };
        let applied = node.ledger.commit(block);
        if self.checker.is_honest(index) {
            let latency = self.now.saturating_sub(block.header.timestamp_ms);
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
        m: &Outgoing,
        bytes: &Rc<[u8]>,
    ) {
        let traffic = self.report.traffic.entry(m.origin).or_default();
        traffic.messages += 1;
        traffic.bytes += bytes.len() as u64;
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
                channel: m.channel,
                bytes: Rc::clone(bytes),
            };
            self.schedule(self.now.saturating_add(delay), event);
        }
    }
}

fn describe_action<P: Protocol>(action: &Action<P::Timer>) -> String {
    match action {
        Action::Persist(bytes) => format!("persist {} bytes", bytes.len()),
        Action::Send { to, message } => {
            format!(
                "send to {to}: {}",
                P::describe(message.channel, &message.bytes)
            )
        }
        Action::Broadcast(message) => {
            format!(
                "broadcast: {}",
                P::describe(message.channel, &message.bytes)
            )
        }
        Action::Commit(block) => format!(
            "commit height {} block {}",
            block.header.height,
            block.hash()
        ),
        Action::ArmTimer { timer, at } => format!("arm {timer:?} at {at}"),
        Action::CancelTimer(timer) => format!("cancel {timer:?}"),
        Action::Evidence(e) => format!("evidence {} by {}", e.kind, e.culprit),
    }
}
