//! The checkers every run goes through: agreement, integrity, liveness and
//! evidence accuracy (determinism compares two runs; see [`super::run`]).
//!
//! Honest means run by a validator that is neither Byzantine nor twinned:
//! a replica that crashed and restarted, or one weakened to ignore its
//! lock, is still held to agreement and integrity. Replicas are numbered as
//! in the scenario (validators, then twins).

use super::report::{CheckerKind, Violation};
use super::scenario::{Scenario, TimeMs, format_duration_ms};
use phalanx_chain::{Block, Hash, ValidatorIndex};
use std::collections::{BTreeMap, BTreeSet};

/// Violations kept verbatim per run (all are counted).
const KEPT_VIOLATIONS: usize = 8;

/// A replica's claim that `culprit` misbehaved, and whether the proof it
/// carries checks out ([`phalanx_consensus::Protocol::check_evidence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceReport {
    pub kind: &'static str,
    pub culprit: ValidatorIndex,
    pub proof_checks: bool,
}

/// One entry of a replica's commit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecord {
    pub at: TimeMs,
    pub height: u64,
    pub hash: Hash,
}

/// The checkers' state for one run.
#[derive(Debug)]
pub struct Checker {
    /// The validator each replica runs as.
    validators: Vec<ValidatorIndex>,
    /// Byzantine and twinned validators.
    byzantine: BTreeSet<ValidatorIndex>,
    /// The first block an honest replica committed at each height.
    canonical: BTreeMap<u64, (Hash, ValidatorIndex)>,
    /// Every replica's commits, across restarts.
    logs: Vec<Vec<CommitRecord>>,
    /// Every replica's last committed block (genesis at first).
    last: Vec<(u64, Hash)>,
    violations: Vec<Violation>,
    counts: BTreeMap<CheckerKind, u64>,
}

impl Checker {
    /// `validators[r]` is the validator replica `r` runs as; `byzantine`
    /// the validators that are not honest.
    pub fn new(
        validators: Vec<ValidatorIndex>,
        byzantine: BTreeSet<ValidatorIndex>,
        genesis: Hash,
    ) -> Checker {
        let mut canonical = BTreeMap::new();
        canonical.insert(0, (genesis, ValidatorIndex(0)));
        let replicas = validators.len();
        Checker {
            validators,
            byzantine,
            canonical,
            logs: vec![Vec::new(); replicas],
            last: vec![(0, genesis); replicas],
            violations: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// True if replica `replica` runs as an honest validator.
    pub fn is_honest(&self, replica: ValidatorIndex) -> bool {
        self.validators
            .get(usize::from(replica.0))
            .is_some_and(|v| !self.byzantine.contains(v))
    }

    pub fn violation(&mut self, checker: CheckerKind, detail: String) {
        *self.counts.entry(checker).or_default() += 1;
        if self.violations.len() < KEPT_VIOLATIONS {
            self.violations.push(Violation { checker, detail });
        }
    }

    /// A replica committed `block` at `at`. `certificate` says whether the
    /// block's certificate checks out; `applied` whether the replica's
    /// ledger could execute and store it.
    pub fn on_commit(
        &mut self,
        replica: ValidatorIndex,
        at: TimeMs,
        block: &Block,
        certificate: Result<(), String>,
        applied: Result<(), String>,
    ) {
        let i = usize::from(replica.0);
        let height = block.header().height.0;
        let hash = block.hash();
        if let Some(log) = self.logs.get_mut(i) {
            log.push(CommitRecord { at, height, hash });
        }
        let previous = self.last.get(i).copied();
        if let Some(slot) = self.last.get_mut(i) {
            *slot = (height, hash);
        }
        if !self.is_honest(replica) {
            return;
        }
        if let Some((prev_height, prev_hash)) = previous
            && (prev_height.checked_add(1) != Some(height) || block.header().parent != prev_hash)
        {
            self.violation(
                CheckerKind::Integrity,
                format!(
                    "replica {replica} committed {hash} at height {height} on parent {}, \
                     but its previous commit was {prev_hash} at height {prev_height}",
                    block.header().parent
                ),
            );
        }
        if let Err(e) = certificate {
            self.violation(
                CheckerKind::Integrity,
                format!("replica {replica} committed {hash} at height {height}: {e}"),
            );
        }
        if let Err(e) = applied {
            self.violation(
                CheckerKind::Integrity,
                format!(
                    "replica {replica} could not apply committed block at height {height}: {e}"
                ),
            );
        }
        match self.canonical.get(&height) {
            Some((first, by)) if *first != hash => {
                let detail = format!(
                    "height {height}: replica {by} committed {first}, replica {replica} committed {hash} (at {})",
                    format_duration_ms(at)
                );
                self.violation(CheckerKind::Agreement, detail);
            }
            Some(_) => {}
            None => {
                self.canonical.insert(height, (hash, replica));
            }
        }
    }

    /// A replica reported evidence: it must prove something, about a
    /// Byzantine replica.
    pub fn on_evidence(&mut self, reporter: ValidatorIndex, evidence: &EvidenceReport) {
        if !self.is_honest(reporter) {
            return;
        }
        if !evidence.proof_checks {
            self.violation(
                CheckerKind::Evidence,
                format!(
                    "replica {reporter} reported {} by {} that proves nothing",
                    evidence.kind, evidence.culprit
                ),
            );
        } else if !self.byzantine.contains(&evidence.culprit) {
            self.violation(
                CheckerKind::Evidence,
                format!(
                    "replica {reporter} reported {} by honest replica {}",
                    evidence.kind, evidence.culprit
                ),
            );
        }
    }

    /// How long after the last disruption the slowest honest replica that is
    /// up took to commit again (`None` if one never did).
    pub fn recovery_ms(&self, scenario: &Scenario, up: &[bool]) -> Option<TimeMs> {
        let from = scenario.disruption_end_ms();
        let mut slowest = 0;
        for (i, log) in self.logs.iter().enumerate() {
            let honest_and_up =
                self.is_honest(ValidatorIndex(i as u16)) && up.get(i).copied().unwrap_or(false);
            if honest_and_up {
                let first = log.iter().find(|c| c.at > from)?;
                slowest = slowest.max(first.at - from);
            }
        }
        Some(slowest)
    }

    /// Liveness: if at most f validators are faulty (Byzantine, twinned, or
    /// with their replica down at the end), every honest replica that is up
    /// commits a block within the bound after the last disruption.
    pub fn check_liveness(&mut self, scenario: &Scenario, up: &[bool]) {
        let mut faulty = self.byzantine.clone();
        for (replica, is_up) in up.iter().enumerate() {
            if let (false, Some(v)) = (*is_up, self.validators.get(replica)) {
                faulty.insert(*v);
            }
        }
        if faulty.len() > scenario.max_faulty() {
            return;
        }
        let from = scenario.disruption_end_ms();
        let until = from.saturating_add(scenario.liveness_bound());
        for (i, log) in self.logs.clone().iter().enumerate() {
            let honest_and_up =
                self.is_honest(ValidatorIndex(i as u16)) && up.get(i).copied().unwrap_or(false);
            if !honest_and_up {
                continue;
            }
            if log.iter().any(|c| c.at > from && c.at <= until) {
                continue;
            }
            let last = log.last().map_or_else(
                || "none".to_owned(),
                |c| format!("height {} at {}", c.height, format_duration_ms(c.at)),
            );
            self.violation(
                CheckerKind::Liveness,
                format!(
                    "replica {i} committed nothing between {} and {} (last commit: {last})",
                    format_duration_ms(from),
                    format_duration_ms(until)
                ),
            );
        }
    }

    /// BLAKE3 over every replica's commit log, in replica order.
    pub fn commit_log_hash(&self) -> Hash {
        let mut bytes = Vec::new();
        for (i, log) in self.logs.iter().enumerate() {
            bytes.extend_from_slice(&(i as u64).to_le_bytes());
            for c in log {
                bytes.extend_from_slice(&c.at.to_le_bytes());
                bytes.extend_from_slice(&c.height.to_le_bytes());
                bytes.extend_from_slice(c.hash.as_bytes());
            }
        }
        Hash::digest(&bytes)
    }

    /// The highest height an honest replica committed.
    pub fn committed_height(&self) -> u64 {
        self.last
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_honest(ValidatorIndex(*i as u16)))
            .map(|(_, (h, _))| *h)
            .max()
            .unwrap_or(0)
    }

    pub fn logs(&self) -> &[Vec<CommitRecord>] {
        &self.logs
    }

    pub fn into_violations(self) -> (Vec<Violation>, BTreeMap<CheckerKind, u64>) {
        (self.violations, self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::{Address, BlockHeader, Height, Justification};

    fn replicas(n: u16) -> Vec<ValidatorIndex> {
        (0..n).map(ValidatorIndex).collect()
    }

    fn block(height: u64, parent: Hash, salt: u64) -> Block {
        Block::new(
            BlockHeader {
                height: Height(height),
                parent,
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                timestamp_ms: salt,
                proposer: Address::default(),
                justification: Justification::Genesis,
            },
            Vec::new(),
        )
    }

    #[test]
    fn agreement_catches_two_blocks_at_one_height_among_honest_replicas() {
        let genesis = Hash::digest(b"g");
        let mut c = Checker::new(replicas(4), BTreeSet::from([ValidatorIndex(3)]), genesis);
        let a = block(1, genesis, 1);
        let b = block(1, genesis, 2);
        c.on_commit(ValidatorIndex(0), 10, &a, Ok(()), Ok(()));
        c.on_commit(ValidatorIndex(1), 11, &a, Ok(()), Ok(()));
        // A Byzantine replica's log is its own business.
        c.on_commit(ValidatorIndex(3), 12, &b, Ok(()), Ok(()));
        assert_eq!(c.counts.get(&CheckerKind::Agreement), None);
        c.on_commit(ValidatorIndex(2), 13, &b, Ok(()), Ok(()));
        assert_eq!(c.counts.get(&CheckerKind::Agreement), Some(&1));
        // A twin (replica 4 runs as validator 1) is not honest, nor is the
        // validator it copies.
        let twinned = BTreeSet::from([ValidatorIndex(1)]);
        let mut replicas = replicas(4);
        replicas.push(ValidatorIndex(1));
        let c = Checker::new(replicas, twinned, genesis);
        assert!(c.is_honest(ValidatorIndex(0)));
        assert!(!c.is_honest(ValidatorIndex(1)));
        assert!(!c.is_honest(ValidatorIndex(4)));
        assert!(!c.is_honest(ValidatorIndex(5)));
    }

    #[test]
    fn integrity_catches_gaps_bad_links_and_bad_certificates() {
        let genesis = Hash::digest(b"g");
        let mut c = Checker::new(replicas(1), BTreeSet::new(), genesis);
        let b1 = block(1, genesis, 0);
        let b3 = block(3, b1.hash(), 0);
        c.on_commit(
            ValidatorIndex(0),
            1,
            &b1,
            Err("no certificate".into()),
            Ok(()),
        );
        c.on_commit(ValidatorIndex(0), 2, &b3, Ok(()), Err("bad state".into()));
        assert_eq!(c.counts.get(&CheckerKind::Integrity), Some(&3));
    }

    #[test]
    fn liveness_needs_a_commit_after_the_last_disruption() {
        let genesis = Hash::digest(b"g");
        let mut s = Scenario::new(4);
        s.liveness_bound_ms = 1_000;
        s.crashes.push("1@1s-2s".parse().unwrap());
        let mut c = Checker::new(replicas(4), BTreeSet::new(), genesis);
        let b1 = block(1, genesis, 0);
        for i in 0..3u16 {
            c.on_commit(ValidatorIndex(i), 2_500, &b1, Ok(()), Ok(()));
        }
        c.on_commit(ValidatorIndex(3), 1_500, &b1, Ok(()), Ok(()));
        c.check_liveness(&s, &[true; 4]);
        assert_eq!(c.counts.get(&CheckerKind::Liveness), Some(&1));
        // With more than f replicas down, liveness is not expected.
        let mut c = Checker::new(replicas(4), BTreeSet::from([ValidatorIndex(0)]), genesis);
        c.check_liveness(&s, &[true, false, true, true]);
        assert!(c.counts.is_empty());
    }

    #[test]
    fn evidence_must_prove_something_about_a_byzantine_replica() {
        let mut c = Checker::new(replicas(4), BTreeSet::from([ValidatorIndex(1)]), Hash::ZERO);
        let good = EvidenceReport {
            kind: "conflicting-votes",
            culprit: ValidatorIndex(1),
            proof_checks: true,
        };
        c.on_evidence(ValidatorIndex(0), &good);
        assert!(c.counts.is_empty());
        c.on_evidence(
            ValidatorIndex(0),
            &EvidenceReport {
                culprit: ValidatorIndex(2),
                ..good.clone()
            },
        );
        c.on_evidence(
            ValidatorIndex(0),
            &EvidenceReport {
                proof_checks: false,
                ..good
            },
        );
        assert_eq!(c.counts.get(&CheckerKind::Evidence), Some(&2));
    }
}
