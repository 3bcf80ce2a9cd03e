//! What a simulation runs: the committee, its faulty members, the network
//! and the fault schedule, and how each is written on the command line.
//!
//! Every [`Scenario`] can be printed back as command-line flags
//! ([`Scenario::to_args`]) that parse to the same scenario, so a failing
//! run always comes with the exact command that replays it.

use super::rng::Rng;
use phalanx_chain::{ConsensusKind, ValidatorIndex};
use phalanx_consensus::{Byzantine, Tuning};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Virtual milliseconds since the simulation began.
pub type TimeMs = u64;

/// Why a scenario (or one of its specs) is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Spec(String),
    #[error("replica {index} does not exist: there are {validators} (0..{validators})")]
    NoSuchReplica { index: u16, validators: usize },
    #[error("replica {index} is given two Byzantine behaviours")]
    TwoBehaviours { index: u16 },
    #[error("{what} must be between 0 and 1, got {value}")]
    Probability { what: &'static str, value: f64 },
    #[error("partition {spec}: replica {index} is in two groups")]
    PartitionOverlap { spec: String, index: u16 },
    #[error("replica {index} crashes at {at} while already down from an earlier crash")]
    CrashOverlap { index: u16, at: String },
    #[error("at least one validator is needed")]
    NoValidators,
    #[error("{what} must be positive")]
    Zero { what: &'static str },
    #[error(
        "replica {index}: {protocol} replicas have no behaviour {behaviour}; they have {expected}"
    )]
    UnknownBehaviour {
        index: u16,
        behaviour: Byzantine,
        protocol: ConsensusKind,
        expected: String,
    },
    #[error(
        "--unsafe-view-change makes PBFT replicas ignore prepared certificates in view changes; \
         it does not apply to {protocol}"
    )]
    UnsafeViewChangeNeedsPbft { protocol: ConsensusKind },
}

fn spec_error(spec: &str, expected: &str, problem: impl fmt::Display) -> ScenarioError {
    ScenarioError::Spec(format!("{spec:?}: {problem}; expected {expected}"))
}

/// Parses a hash-power share, `I:P%` (replica I has P percent).
pub fn parse_hashrate(text: &str) -> Result<(ValidatorIndex, u32), String> {
    let expected = "REPLICA:PERCENT%, e.g. 2:40%";
    let (index, percent) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected {expected}"))?;
    let index = index
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{text:?}: {index:?} is not a replica index; expected {expected}"))?;
    let percent = percent.trim().trim_end_matches('%');
    let percent = percent.parse::<u32>().map_err(|_| {
        format!("{text:?}: {percent:?} is not a whole percentage; expected {expected}")
    })?;
    Ok((ValidatorIndex(index), percent))
}

/// Parses `30s`, `2500ms`, `2m`: a whole number and a unit.
pub fn parse_duration_ms(text: &str) -> Result<TimeMs, String> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(format!(
            "{text:?} has no unit; write a whole number with ms, s or m (e.g. 500ms, 30s, 2m)"
        ));
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number with a unit (e.g. 500ms, 30s, 2m)"))?;
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The shortest way [`parse_duration_ms`] reads back.
pub fn format_duration_ms(ms: TimeMs) -> String {
    if ms != 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms != 0 && ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

fn parse_index(text: &str) -> Result<ValidatorIndex, String> {
    text.trim()
        .parse::<u16>()
        .map(ValidatorIndex)
        .map_err(|_| format!("{text:?} is not a replica index"))
}

fn parse_indices(text: &str) -> Result<Vec<ValidatorIndex>, String> {
    if text.trim().is_empty() {
        return Err("empty list of replicas".into());
    }
    text.split(',').map(parse_index).collect()
}

fn join_indices(indices: &[ValidatorIndex]) -> String {
    let parts: Vec<String> = indices.iter().map(|i| i.0.to_string()).collect();
    parts.join(",")
}

/// Per-link one-way delay, uniform in `min_ms..=max_ms`: `5..50`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl FromStr for DelayRange {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "MIN..MAX in whole milliseconds, e.g. 5..50";
        let (lo, hi) = s
            .split_once("..")
            .ok_or_else(|| spec_error(s, EXPECTED, "no '..'"))?;
        let num = |t: &str| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| spec_error(s, EXPECTED, format!("{t:?} is not a number")))
        };
        let (min_ms, max_ms) = (num(lo)?, num(hi)?);
        if min_ms > max_ms {
            return Err(spec_error(s, EXPECTED, "MIN is above MAX"));
        }
        Ok(DelayRange { min_ms, max_ms })
    }
}

impl fmt::Display for DelayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min_ms, self.max_ms)
    }
}

/// `I[,I...]:BEHAVIOUR`: replicas that misbehave, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByzantineSpec {
    pub replicas: Vec<ValidatorIndex>,
    pub behaviour: Byzantine,
}

impl FromStr for ByzantineSpec {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "REPLICA[,REPLICA...]:BEHAVIOUR, e.g. 3:equivocate or 0,2:silent";
        let (who, what) = s
            .split_once(':')
            .ok_or_else(|| spec_error(s, EXPECTED, "no ':'"))?;
        let replicas = parse_indices(who).map_err(|e| spec_error(s, EXPECTED, e))?;
        let behaviour = what
            .trim()
            .parse::<Byzantine>()
            .map_err(|e| spec_error(s, EXPECTED, e))?;
        Ok(ByzantineSpec {
            replicas,
            behaviour,
        })
    }
}

/// `GROUP/GROUP[/GROUP...]@START-END`: from `START` until `END` no message
/// crosses between groups. Replicas named in no group form one more group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub groups: Vec<Vec<ValidatorIndex>>,
    pub start_ms: TimeMs,
    pub end_ms: TimeMs,
}

impl Partition {
    /// True if the partition is in force at `at` and separates `a` and `b`.
    pub fn separates(&self, a: ValidatorIndex, b: ValidatorIndex, at: TimeMs) -> bool {
        if at < self.start_ms || at >= self.end_ms {
            return false;
        }
        self.group_of(a) != self.group_of(b)
    }

    /// The group's position, or `None` for the group of unnamed replicas.
    fn group_of(&self, v: ValidatorIndex) -> Option<usize> {
        self.groups.iter().position(|g| g.contains(&v))
    }
}

impl FromStr for Partition {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "GROUP/GROUP@START-END, e.g. 0,1/2,3@2s-8s";
        let (groups, window) = s
            .split_once('@')
            .ok_or_else(|| spec_error(s, EXPECTED, "no '@START-END'"))?;
        let groups = groups
            .split('/')
            .map(parse_indices)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| spec_error(s, EXPECTED, e))?;
        if groups.len() < 2 && groups.iter().map(Vec::len).sum::<usize>() == 0 {
            return Err(spec_error(s, EXPECTED, "no groups"));
        }
        let (start, end) = window
            .split_once('-')
            .ok_or_else(|| spec_error(s, EXPECTED, "no '-END' after START"))?;
        let start_ms = parse_duration_ms(start).map_err(|e| spec_error(s, EXPECTED, e))?;
        let end_ms = parse_duration_ms(end).map_err(|e| spec_error(s, EXPECTED, e))?;
        if end_ms <= start_ms {
            return Err(spec_error(s, EXPECTED, "END is not after START"));
        }
        Ok(Partition {
            groups,
            start_ms,
            end_ms,
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self.groups.iter().map(|g| join_indices(g)).collect();
        write!(
            f,
            "{}@{}-{}",
            groups.join("/"),
            format_duration_ms(self.start_ms),
            format_duration_ms(self.end_ms)
        )
    }
}

/// `REPLICA@AT[-RESTART]`: the replica crashes at `AT` and, if given,
/// restarts at `RESTART` from what it had persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    pub replica: ValidatorIndex,
    pub at_ms: TimeMs,
    pub restart_ms: Option<TimeMs>,
}

impl FromStr for Crash {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "REPLICA@CRASH[-RESTART], e.g. 2@3s-6s (or 2@3s to stay down)";
        let (who, window) = s
            .split_once('@')
            .ok_or_else(|| spec_error(s, EXPECTED, "no '@'"))?;
        let replica = parse_index(who).map_err(|e| spec_error(s, EXPECTED, e))?;
        let (at, restart) = match window.split_once('-') {
            Some((at, restart)) => (at, Some(restart)),
            None => (window, None),
        };
        let at_ms = parse_duration_ms(at).map_err(|e| spec_error(s, EXPECTED, e))?;
        let restart_ms = restart
            .map(parse_duration_ms)
            .transpose()
            .map_err(|e| spec_error(s, EXPECTED, e))?;
        if restart_ms.is_some_and(|r| r <= at_ms) {
            return Err(spec_error(s, EXPECTED, "RESTART is not after CRASH"));
        }
        Ok(Crash {
            replica,
            at_ms,
            restart_ms,
        })
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.replica, format_duration_ms(self.at_ms))?;
        if let Some(r) = self.restart_ms {
            write!(f, "-{}", format_duration_ms(r))?;
        }
        Ok(())
    }
}

/// Everything about one simulation except its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub consensus: ConsensusKind,
    pub validators: usize,
    pub byzantine: BTreeMap<ValidatorIndex, Byzantine>,
    /// Negative control: every replica counts this many signers as a
    /// quorum (`Committee::with_unsafe_quorum`), so the checkers can be
    /// shown to catch a broken protocol.
    pub unsafe_quorum: Option<usize>,
    /// Negative control (PBFT only): every replica ignores prepared
    /// certificates in view changes ([`Tuning::unsafe_view_change`]), a
    /// broken protocol whose agreement violations the checkers must catch.
    pub unsafe_view_change: bool,
    /// Validators that run two copies of themselves with one key, each
    /// behaving honestly towards the replicas it can reach: a two-faced
    /// Byzantine validator, as in Twins (Bano et al., 2020). The copy of
    /// `twins[k]` (in index order) is replica `n + k`.
    pub twins: BTreeSet<ValidatorIndex>,
    pub delay: DelayRange,
    pub loss: f64,
    pub dup: f64,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    pub duration_ms: TimeMs,
    /// Liveness: after the last disruption ends, every honest replica that
    /// is up commits a new block within this long.
    pub liveness_bound_ms: TimeMs,
    pub base_timeout_ms: u64,
    /// The first timeout is also at least this many times the longest
    /// recent gap between progress events (0: the base alone).
    pub timeout_factor: u64,
    pub max_timeout_ms: u64,
    /// The simulated client submits one transfer this often.
    pub tx_interval_ms: u64,
    /// Replicas re-broadcast new messages (the protocol's forwarding).
    pub forward: bool,
    /// Verify each message sent once and reuse the result for its copies,
    /// forwarded ones included (same bytes, same answer), and execute
    /// each block once per run, its changes shared by the replicas
    /// ([`phalanx_chain::speculative::SharedExecutions`]); a speed-up that
    /// changes no outcome.
    pub verify_cache: bool,
    /// Replicas and the client sign ideal signatures
    /// ([`phalanx_crypto::memo::Signatures::Ideal`]): only the key's
    /// holder can make one and it verifies exactly where an ed25519
    /// signature would, at a hundredth of the cost. Off, every signature is
    /// ed25519's (slower; outcomes keep their kind, though hashes and so the
    /// commit log differ).
    pub ideal_signatures: bool,
    /// PBFT: a checkpoint every this many heights (the watermark window is
    /// twice this, the paper's example).
    pub checkpoint_interval: u64,
    /// PBFT: heights a primary keeps in flight (proposed, not committed).
    pub max_in_flight: u64,
    /// Proof of work: the whole network finds a block this often on
    /// average (the genesis `block_interval_ms`).
    pub block_interval_ms: u64,
    /// Proof of work: confirmations that make a block final.
    pub confirmations: u64,
    /// Proof of work: replicas with a set share of the hash power, in
    /// percent; the others share the rest equally.
    pub hashrate: BTreeMap<ValidatorIndex, u32>,
    /// Proof of work: replicas keep the first-seen of two equal tips
    /// ([`Tuning::first_seen_ties`]).
    pub first_seen_ties: bool,
}

/// Under random faults, each faulty proof-of-work miner has this share of
/// the hash power (percent): the share its confirmations are chosen for
/// (an attacker with 10 % catches up from 12 confirmations with
/// probability about 1e-6).
pub const RANDOM_ATTACKER_HASH_PERCENT: u32 = 10;

/// Defaults, as the command line documents them.
pub mod defaults {
    pub const VALIDATORS: usize = 4;
    pub const DELAY_MIN_MS: u64 = 5;
    pub const DELAY_MAX_MS: u64 = 50;
    pub const DURATION_MS: u64 = 30_000;
    pub const LIVENESS_BOUND_MS: u64 = 20_000;
    pub const BASE_TIMEOUT_MS: u64 = 1_000;
    pub const MAX_TIMEOUT_MS: u64 = 8_000;
    pub const TX_INTERVAL_MS: u64 = 100;
    /// As [`Tuning::default`](phalanx_consensus::Tuning) has it.
    pub const CHECKPOINT_INTERVAL: u64 = 16;
    /// As [`Tuning::default`](phalanx_consensus::Tuning) has it.
    pub const MAX_IN_FLIGHT: u64 = 4;
    pub const BLOCK_INTERVAL_MS: u64 = 2_000;
    pub const CONFIRMATIONS: u64 = 6;
}

impl Scenario {
    /// A fault-free HotStuff network of `validators` with the defaults.
    pub fn new(validators: usize) -> Scenario {
        Scenario {
            consensus: ConsensusKind::Hotstuff,
            validators,
            byzantine: BTreeMap::new(),
            unsafe_quorum: None,
            unsafe_view_change: false,
            twins: BTreeSet::new(),
            delay: DelayRange {
                min_ms: defaults::DELAY_MIN_MS,
                max_ms: defaults::DELAY_MAX_MS,
            },
            loss: 0.0,
            dup: 0.0,
            partitions: Vec::new(),
            crashes: Vec::new(),
            duration_ms: defaults::DURATION_MS,
            liveness_bound_ms: defaults::LIVENESS_BOUND_MS,
            base_timeout_ms: defaults::BASE_TIMEOUT_MS,
            timeout_factor: phalanx_consensus::view_timeout::DEFAULT_TIMEOUT_FACTOR,
            max_timeout_ms: defaults::MAX_TIMEOUT_MS,
            tx_interval_ms: defaults::TX_INTERVAL_MS,
            forward: true,
            verify_cache: true,
            ideal_signatures: true,
            checkpoint_interval: defaults::CHECKPOINT_INTERVAL,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            block_interval_ms: defaults::BLOCK_INTERVAL_MS,
            confirmations: defaults::CONFIRMATIONS,
            hashrate: BTreeMap::new(),
            first_seen_ties: false,
        }
    }

    /// Replica `i`'s share of the hash power (0 to 1): its set share, or
    /// an equal part of what the set shares leave.
    pub fn hash_share(&self, index: ValidatorIndex) -> f64 {
        let me = self.validator_of(usize::from(index.0)).unwrap_or(index);
        if let Some(percent) = self.hashrate.get(&me) {
            return f64::from(*percent) / 100.0;
        }
        let set: u32 = self.hashrate.values().sum();
        let others = self.validators.saturating_sub(self.hashrate.len()).max(1);
        f64::from(100u32.saturating_sub(set)) / 100.0 / others as f64
    }

    /// How the replicas of validator `me` are tuned: the scenario's
    /// timeouts, forwarding and PBFT settings, its Byzantine behaviour if
    /// it has one, and no batching delays (a leader proposes at once).
    pub fn tuning(&self, me: ValidatorIndex) -> Tuning {
        Tuning {
            base_timeout_ms: self.base_timeout_ms,
            timeout_factor: self.timeout_factor,
            max_timeout_ms: self.max_timeout_ms,
            forward: self.forward,
            byzantine: self.byzantine.get(&me).copied(),
            max_batch_delay_ms: 0,
            empty_block_delay_ms: 0,
            checkpoint_interval: self.checkpoint_interval,
            watermark_window: self.checkpoint_interval.saturating_mul(2),
            max_in_flight: self.max_in_flight,
            unsafe_view_change: self.unsafe_view_change,
            miner: (self.consensus == ConsensusKind::Pow)
                .then(|| super::client::miner_address(usize::from(me.0))),
            first_seen_ties: self.first_seen_ties,
        }
    }

    /// f = floor((n - 1) / 3).
    pub fn max_faulty(&self) -> usize {
        self.validators.saturating_sub(1) / 3
    }

    /// Replicas in the run: one per validator, then one per twin.
    pub fn replicas(&self) -> usize {
        self.validators + self.twins.len()
    }

    /// The validator replica `replica` runs as (its twin's for a twin).
    pub fn validator_of(&self, replica: usize) -> Option<ValidatorIndex> {
        if replica < self.validators {
            return u16::try_from(replica).ok().map(ValidatorIndex);
        }
        self.twins.iter().nth(replica - self.validators).copied()
    }

    /// Validators that are not honest: Byzantine or twinned.
    pub fn faulty_validators(&self) -> BTreeSet<ValidatorIndex> {
        self.byzantine.keys().chain(&self.twins).copied().collect()
    }

    /// Adds Byzantine replicas, refusing a replica given two behaviours.
    pub fn add_byzantine(&mut self, spec: &ByzantineSpec) -> Result<(), ScenarioError> {
        for &replica in &spec.replicas {
            if let Some(existing) = self.byzantine.insert(replica, spec.behaviour)
                && existing != spec.behaviour
            {
                return Err(ScenarioError::TwoBehaviours { index: replica.0 });
            }
        }
        Ok(())
    }

    /// Checks every index, probability and window against the committee,
    /// and every Byzantine behaviour and negative control against the
    /// protocol.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.validators == 0 {
            return Err(ScenarioError::NoValidators);
        }
        self.validate_protocol()?;
        let in_range = |index: ValidatorIndex, count: usize| {
            if usize::from(index.0) < count {
                Ok(())
            } else {
                Err(ScenarioError::NoSuchReplica {
                    index: index.0,
                    validators: count,
                })
            }
        };
        for index in self.byzantine.keys().chain(&self.twins) {
            in_range(*index, self.validators)?;
        }
        let replicas = self.replicas();
        let known = |index: ValidatorIndex| in_range(index, replicas);
        for (what, value) in [("--loss", self.loss), ("--dup", self.dup)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ScenarioError::Probability { what, value });
            }
        }
        for (what, value) in [
            ("--duration", self.duration_ms),
            ("--base-timeout", self.base_timeout_ms),
            ("--max-timeout", self.max_timeout_ms),
            ("--tx-interval", self.tx_interval_ms),
            ("--liveness-bound", self.liveness_bound_ms),
            ("--checkpoint-interval", self.checkpoint_interval),
            ("--max-in-flight", self.max_in_flight),
            ("--block-interval", self.block_interval_ms),
            ("--confirmations", self.confirmations),
        ] {
            if value == 0 {
                return Err(ScenarioError::Zero { what });
            }
        }
        for index in self.hashrate.keys() {
            in_range(*index, self.validators)?;
        }
        let set: u32 = self.hashrate.values().sum();
        let everyone_set = self.hashrate.len() >= self.validators;
        if self.hashrate.values().any(|p| *p == 0 || *p > 100)
            || set > 100
            || (everyone_set && set != 100)
        {
            return Err(ScenarioError::Spec(format!(
                "--hashrate shares add up to {set} %: each must be 1 to 100 %, at most 100 % \
                 in all, and exactly 100 % if every miner has one"
            )));
        }
        for p in &self.partitions {
            let mut seen = BTreeSet::new();
            for index in p.groups.iter().flatten() {
                known(*index)?;
                if !seen.insert(*index) {
                    return Err(ScenarioError::PartitionOverlap {
                        spec: p.to_string(),
                        index: index.0,
                    });
                }
            }
        }
        self.validate_crashes(known)
    }

    /// Refuses a behaviour the protocol's replicas do not have, and a
    /// negative control for another protocol.
    fn validate_protocol(&self) -> Result<(), ScenarioError> {
        let known = Byzantine::of(self.consensus);
        if let Some((index, behaviour)) = self.byzantine.iter().find(|(_, b)| !known.contains(b)) {
            let names: Vec<&str> = known.iter().map(|b| b.name()).collect();
            return Err(ScenarioError::UnknownBehaviour {
                index: index.0,
                behaviour: *behaviour,
                protocol: self.consensus,
                expected: if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
            });
        }
        if self.unsafe_view_change && self.consensus != ConsensusKind::Pbft {
            return Err(ScenarioError::UnsafeViewChangeNeedsPbft {
                protocol: self.consensus,
            });
        }
        Ok(())
    }

    fn validate_crashes(
        &self,
        known: impl Fn(ValidatorIndex) -> Result<(), ScenarioError>,
    ) -> Result<(), ScenarioError> {
        let mut by_replica: BTreeMap<ValidatorIndex, Vec<&Crash>> = BTreeMap::new();
        for c in &self.crashes {
            known(c.replica)?;
            by_replica.entry(c.replica).or_default().push(c);
        }
        for (replica, mut crashes) in by_replica {
            crashes.sort_by_key(|c| c.at_ms);
            let mut down_until: Option<Option<TimeMs>> = None;
            for c in crashes {
                let overlaps = match down_until {
                    Some(None) => true,
                    Some(Some(until)) => c.at_ms < until,
                    None => false,
                };
                if overlaps {
                    return Err(ScenarioError::CrashOverlap {
                        index: replica.0,
                        at: format_duration_ms(c.at_ms),
                    });
                }
                down_until = Some(c.restart_ms);
            }
        }
        Ok(())
    }

    /// When the last partition heals, the last crashed replica restarts, or
    /// (for one that stays down) it crashes: liveness is measured from here.
    pub fn disruption_end_ms(&self) -> TimeMs {
        let partitions = self.partitions.iter().map(|p| p.end_ms);
        let crashes = self.crashes.iter().map(|c| c.restart_ms.unwrap_or(c.at_ms));
        partitions.chain(crashes).max().unwrap_or(0)
    }

    /// The run lasts `duration`, and at least long enough after the last
    /// disruption to check liveness.
    pub fn end_ms(&self) -> TimeMs {
        self.duration_ms.max(
            self.disruption_end_ms()
                .saturating_add(self.liveness_bound()),
        )
    }

    /// The liveness bound in force. Proof-of-work blocks come at random:
    /// finality needs `confirmations` (k) of them, so the bound is at least
    /// max(30, 2k + 20) block intervals. The chance that an honest network
    /// misses it is that of fewer than k blocks in that many expected:
    /// P(Poisson(30) < 6) is about 1e-7, P(Poisson(44) < 12) about 1e-9.
    pub fn liveness_bound(&self) -> TimeMs {
        if self.consensus == ConsensusKind::Pow {
            let blocks = self
                .confirmations
                .saturating_mul(2)
                .saturating_add(20)
                .max(30);
            self.liveness_bound_ms
                .max(self.block_interval_ms.saturating_mul(blocks))
        } else {
            self.liveness_bound_ms
        }
    }

    /// Replicas that are down when the run ends.
    pub fn down_at_end(&self) -> BTreeSet<ValidatorIndex> {
        let end = self.end_ms();
        let mut down = BTreeSet::new();
        let mut crashes = self.crashes.clone();
        crashes.sort_by_key(|c| c.at_ms);
        for c in crashes {
            if c.at_ms <= end && c.restart_ms.is_none_or(|r| r > end) {
                down.insert(c.replica);
            } else {
                down.remove(&c.replica);
            }
        }
        down
    }

    /// The command-line flags (after `sim`) that give this scenario.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--consensus".to_owned(),
            self.consensus.to_string(),
            "--validators".to_owned(),
            self.validators.to_string(),
        ];
        let mut flag = |name: &str, value: String| {
            args.push(name.to_owned());
            args.push(value);
        };
        let mut by_behaviour: BTreeMap<&str, Vec<ValidatorIndex>> = BTreeMap::new();
        for (index, b) in &self.byzantine {
            by_behaviour.entry(b.name()).or_default().push(*index);
        }
        for (name, replicas) in by_behaviour {
            flag("--byzantine", format!("{}:{name}", join_indices(&replicas)));
        }
        if let Some(quorum) = self.unsafe_quorum {
            flag("--unsafe-quorum", quorum.to_string());
        }
        if !self.twins.is_empty() {
            let list: Vec<ValidatorIndex> = self.twins.iter().copied().collect();
            flag("--twins", join_indices(&list));
        }
        let d = Scenario::new(self.validators);
        if self.loss != d.loss {
            flag("--loss", self.loss.to_string());
        }
        if self.dup != d.dup {
            flag("--dup", self.dup.to_string());
        }
        if self.delay != d.delay {
            flag("--delay-ms", self.delay.to_string());
        }
        for p in &self.partitions {
            flag("--partition", p.to_string());
        }
        for c in &self.crashes {
            flag("--crash", c.to_string());
        }
        let durations = [
            ("--duration", self.duration_ms, d.duration_ms),
            (
                "--liveness-bound",
                self.liveness_bound_ms,
                d.liveness_bound_ms,
            ),
            ("--base-timeout", self.base_timeout_ms, d.base_timeout_ms),
            ("--max-timeout", self.max_timeout_ms, d.max_timeout_ms),
            ("--tx-interval", self.tx_interval_ms, d.tx_interval_ms),
        ];
        for (name, value, default) in durations {
            if value != default {
                flag(name, format_duration_ms(value));
            }
        }
        let pbft = [
            (
                "--checkpoint-interval",
                self.checkpoint_interval,
                d.checkpoint_interval,
            ),
            ("--max-in-flight", self.max_in_flight, d.max_in_flight),
            ("--timeout-factor", self.timeout_factor, d.timeout_factor),
        ];
        for (name, value, default) in pbft {
            if value != default {
                flag(name, value.to_string());
            }
        }
        if self.block_interval_ms != d.block_interval_ms {
            flag(
                "--block-interval",
                format_duration_ms(self.block_interval_ms),
            );
        }
        if self.confirmations != d.confirmations {
            flag("--confirmations", self.confirmations.to_string());
        }
        for (index, percent) in &self.hashrate {
            flag("--hashrate", format!("{}:{percent}%", index.0));
        }
        if self.unsafe_view_change {
            args.push("--unsafe-view-change".to_owned());
        }
        if self.first_seen_ties {
            args.push("--first-seen-ties".to_owned());
        }
        if !self.forward {
            args.push("--no-forward".to_owned());
        }
        if !self.verify_cache {
            args.push("--no-verify-cache".to_owned());
        }
        if !self.ideal_signatures {
            args.push("--real-signatures".to_owned());
        }
        args
    }

    /// This scenario with a fault schedule drawn from `seed` in place of its
    /// own Byzantine replicas, twins, loss, duplication, partitions and
    /// crashes: exactly f faulty validators whose behaviours (the
    /// protocol's Byzantine ones, [`Byzantine::of`], and twins) rotate with
    /// the seed, light loss and
    /// duplication, and (each with probability 1/2) one partition and one
    /// crash with restart, all over by a few seconds in.
    pub fn with_random_faults(&self, seed: u64) -> Scenario {
        let mut rng = Rng::stream(seed, "faults");
        let mut s = self.clone();
        let n = s.validators;
        let f = s.max_faulty();
        let mut order: Vec<ValidatorIndex> = (0..n).map(|i| ValidatorIndex(i as u16)).collect();
        shuffle(&mut order, &mut rng);
        s.byzantine = BTreeMap::new();
        s.twins = BTreeSet::new();
        let behaviours = Byzantine::of(s.consensus);
        let pow = s.consensus == ConsensusKind::Pow;
        for (k, index) in order.iter().take(f).enumerate() {
            // Proof of work has no use for twins (one key mining twice is
            // just more hash power), only its attackers.
            let choices = behaviours.len() + usize::from(!pow);
            let at = (seed as usize).wrapping_add(k) % choices.max(1);
            match behaviours.get(at) {
                Some(b) => {
                    s.byzantine.insert(*index, *b);
                }
                None => {
                    s.twins.insert(*index);
                }
            }
            if pow {
                s.hashrate.insert(*index, RANDOM_ATTACKER_HASH_PERCENT);
            }
        }
        let replicas = s.replicas();
        let mut order: Vec<ValidatorIndex> =
            (0..replicas).map(|i| ValidatorIndex(i as u16)).collect();
        shuffle(&mut order, &mut rng);
        s.loss = [0.0, 0.02, 0.05, 0.1]
            .get(rng.index(4))
            .copied()
            .unwrap_or(0.0);
        s.dup = [0.0, 0.02, 0.05].get(rng.index(3)).copied().unwrap_or(0.0);
        s.partitions = Vec::new();
        if rng.chance(0.5) && replicas >= 2 {
            let mut members = order.clone();
            shuffle(&mut members, &mut rng);
            let cut = 1 + rng.index(replicas - 1);
            let (a, b) = members.split_at(cut);
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort();
            b.sort();
            let start_ms = rng.range_inclusive(10, 40) * 100;
            let end_ms = start_ms + rng.range_inclusive(5, 40) * 100;
            s.partitions.push(Partition {
                groups: vec![a, b],
                start_ms,
                end_ms,
            });
        }
        s.crashes = Vec::new();
        if rng.chance(0.5) {
            let replica = order
                .get(rng.index(replicas))
                .copied()
                .unwrap_or(ValidatorIndex(0));
            let at_ms = rng.range_inclusive(5, 50) * 100;
            let restart_ms = Some(at_ms + rng.range_inclusive(5, 40) * 100);
            s.crashes.push(Crash {
                replica,
                at_ms,
                restart_ms,
            });
        }
        s
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.index(i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let p: Partition = "0,1/2,3@2s-8s".parse().unwrap();
        assert_eq!(p.groups.len(), 2);
        assert_eq!((p.start_ms, p.end_ms), (2_000, 8_000));
        assert_eq!(p.to_string(), "0,1/2,3@2s-8s");
        let c: Crash = "2@3s-6500ms".parse().unwrap();
        assert_eq!(c.restart_ms, Some(6_500));
        assert_eq!(c.to_string(), "2@3s-6500ms");
        let forever: Crash = "1@1m".parse().unwrap();
        assert_eq!((forever.at_ms, forever.restart_ms), (60_000, None));
        let b: ByzantineSpec = "0,2:double-vote".parse().unwrap();
        assert_eq!(b.replicas, [ValidatorIndex(0), ValidatorIndex(2)]);
        assert_eq!(b.behaviour, Byzantine::DoubleVote);
        let d: DelayRange = "5..50".parse().unwrap();
        assert_eq!((d.min_ms, d.max_ms), (5, 50));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases: Vec<(String, &str)> = vec![
            (
                "0,1/2,3@2s".parse::<Partition>().unwrap_err().to_string(),
                "no '-END'",
            ),
            (
                "0,1/2,3".parse::<Partition>().unwrap_err().to_string(),
                "GROUP/GROUP@START-END",
            ),
            (
                "0,x/2@1s-2s".parse::<Partition>().unwrap_err().to_string(),
                "not a replica index",
            ),
            (
                "0/1@5s-2s".parse::<Partition>().unwrap_err().to_string(),
                "END is not after START",
            ),
            (
                "0/1@5-9s".parse::<Partition>().unwrap_err().to_string(),
                "no unit",
            ),
            (
                "2@6s-3s".parse::<Crash>().unwrap_err().to_string(),
                "RESTART is not after CRASH",
            ),
            (
                "1:evil".parse::<ByzantineSpec>().unwrap_err().to_string(),
                "unknown behaviour",
            ),
            (
                "50..5".parse::<DelayRange>().unwrap_err().to_string(),
                "MIN is above MAX",
            ),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn validation_checks_indices_and_overlaps() {
        let mut s = Scenario::new(4);
        s.partitions.push("0,1/1,2@1s-2s".parse().unwrap());
        assert!(matches!(
            s.validate(),
            Err(ScenarioError::PartitionOverlap { index: 1, .. })
        ));
        let mut s = Scenario::new(4);
        s.crashes.push("4@1s".parse().unwrap());
        assert!(matches!(
            s.validate(),
            Err(ScenarioError::NoSuchReplica { index: 4, .. })
        ));
        let mut s = Scenario::new(4);
        s.crashes.push("1@1s-5s".parse().unwrap());
        s.crashes.push("1@3s-6s".parse().unwrap());
        assert!(matches!(
            s.validate(),
            Err(ScenarioError::CrashOverlap { index: 1, .. })
        ));
        let mut s = Scenario::new(4);
        s.loss = 1.5;
        assert!(s.validate().is_err());
        let mut s = Scenario::new(4);
        s.add_byzantine(&"1:silent".parse().unwrap()).unwrap();
        assert!(s.add_byzantine(&"1:equivocate".parse().unwrap()).is_err());
    }

    #[test]
    fn twins_are_numbered_after_the_validators() {
        let mut s = Scenario::new(4);
        s.twins = BTreeSet::from([ValidatorIndex(1), ValidatorIndex(3)]);
        assert_eq!(s.replicas(), 6);
        assert_eq!(s.validator_of(2), Some(ValidatorIndex(2)));
        assert_eq!(s.validator_of(4), Some(ValidatorIndex(1)));
        assert_eq!(s.validator_of(5), Some(ValidatorIndex(3)));
        assert_eq!(s.validator_of(6), None);
        s.partitions.push("0,1,3/2,4,5@0ms-5s".parse().unwrap());
        s.validate().unwrap();
        s.crashes.push("6@1s".parse().unwrap());
        assert!(s.validate().is_err());
    }

    #[test]
    fn liveness_window_and_down_replicas() {
        let mut s = Scenario::new(4);
        s.duration_ms = 10_000;
        s.liveness_bound_ms = 5_000;
        s.partitions.push("0/1@1s-8s".parse().unwrap());
        s.crashes.push("2@2s-3s".parse().unwrap());
        s.crashes.push("3@4s".parse().unwrap());
        assert_eq!(s.disruption_end_ms(), 8_000);
        assert_eq!(s.end_ms(), 13_000);
        assert_eq!(s.down_at_end(), BTreeSet::from([ValidatorIndex(3)]));
    }

    #[test]
    fn random_faults_have_f_byzantine_and_valid_windows() {
        for seed in 0..200 {
            let s = Scenario::new(7).with_random_faults(seed);
            assert_eq!(s.faulty_validators().len(), 2, "seed {seed}");
            s.validate().unwrap();
            assert_eq!(s, Scenario::new(7).with_random_faults(seed));
            assert!(s.down_at_end().is_empty());
        }
    }

    #[test]
    fn behaviours_and_negative_controls_must_be_the_protocols_own() {
        let with = |consensus: ConsensusKind, spec: &str| {
            let mut s = Scenario::new(4);
            s.consensus = consensus;
            s.add_byzantine(&spec.parse().unwrap()).unwrap();
            s.validate()
        };
        with(ConsensusKind::Hotstuff, "1:stale-qc").unwrap();
        with(ConsensusKind::Pbft, "1,2:withhold").unwrap();
        let err = with(ConsensusKind::Hotstuff, "2:skip-height")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "replica 2: hotstuff replicas have no behaviour skip-height; they have silent, \
             equivocate, double-vote, invalid-signature, stale-qc"
        );
        let err = with(ConsensusKind::Pbft, "1:stale-qc").unwrap_err();
        assert!(matches!(
            err,
            ScenarioError::UnknownBehaviour { index: 1, .. }
        ));
        let err = with(ConsensusKind::Pow, "0:silent")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("they have selfish, double-spend"), "{err}");
        with(ConsensusKind::Pow, "0:selfish").unwrap();

        let mut s = Scenario::new(4);
        s.unsafe_view_change = true;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("does not apply to hotstuff"), "{err}");
        s.consensus = ConsensusKind::Pbft;
        s.validate().unwrap();
        assert!(s.tuning(ValidatorIndex(0)).unsafe_view_change);
    }

    #[test]
    fn random_faults_rotate_through_the_protocols_behaviours() {
        // HotStuff's rotation is the one the simulator had before PBFT's
        // behaviours existed, so its schedules (and figures) are unchanged.
        assert_eq!(
            Byzantine::of(ConsensusKind::Hotstuff),
            [
                Byzantine::Silent,
                Byzantine::Equivocate,
                Byzantine::DoubleVote,
                Byzantine::InvalidSignature,
                Byzantine::StaleQc,
            ]
        );
        for consensus in [ConsensusKind::Hotstuff, ConsensusKind::Pbft] {
            let mut base = Scenario::new(4);
            base.consensus = consensus;
            let mut seen = BTreeSet::new();
            let mut twinned = false;
            for seed in 0..100 {
                let s = base.with_random_faults(seed);
                s.validate().unwrap();
                seen.extend(s.byzantine.values().map(|b| b.name()));
                twinned |= !s.twins.is_empty();
            }
            let all: BTreeSet<&str> = Byzantine::of(consensus).iter().map(|b| b.name()).collect();
            assert_eq!(seen, all, "{consensus}");
            assert!(twinned, "{consensus}");
        }
    }

    #[test]
    fn pbft_settings_default_to_the_protocols_and_reach_its_tuning() {
        let defaults = Tuning::default();
        let mut s = Scenario::new(4);
        let t = s.tuning(ValidatorIndex(0));
        assert_eq!(
            (t.checkpoint_interval, t.watermark_window, t.max_in_flight),
            (
                defaults.checkpoint_interval,
                defaults.watermark_window,
                defaults.max_in_flight
            )
        );
        assert_eq!((t.max_batch_delay_ms, t.empty_block_delay_ms), (0, 0));
        s.checkpoint_interval = 50;
        s.max_in_flight = 0;
        assert!(matches!(
            s.validate(),
            Err(ScenarioError::Zero {
                what: "--max-in-flight"
            })
        ));
        let t = s.tuning(ValidatorIndex(0));
        assert_eq!((t.checkpoint_interval, t.watermark_window), (50, 100));
    }
}
