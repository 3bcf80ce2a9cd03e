//! Who leads a HotStuff view: round-robin, or reputation (the default),
//! which skips validators that have not been voting.
//!
//! # The reputation rule (after Carousel, Cohen et al., FC 2022)
//!
//! The leader of view `v` is a function of `v` and of the header of the
//! block `P` that a proposal for `v` extends (its parent), nothing else:
//!
//! - If `P` was proposed in view `v - 1` (the chain did not break, the
//!   proposal is justified by a QC for `v - 1`), the *candidates* are the
//!   signers of the QC inside `P`'s header (validators that voted
//!   recently), minus `P`'s own proposer (so leadership moves on and no
//!   validator leads two views in a row). The leader is candidate number
//!   `mix(v) mod |candidates|`, candidates in index order, where `mix` is
//!   a fixed bijection that scrambles the view's bits (SplitMix64's
//!   finalizer): with `v mod |candidates|` a validator that leads every
//!   other view could keep the same parity forever and, choosing the QC
//!   in its own blocks, keep one honest validator from ever leading.
//! - If there are no candidates (the genesis QC has no signers), the
//!   leader is round-robin: validator `v mod n`.
//! - Otherwise `P` is from view `p < v - 1` and the proposal is justified
//!   by a TC for `v - 1`: the views `p + 1 .. v - 1` failed. The first of
//!   them was led by the reputation leader `L` on `P` (by the rule above);
//!   view `v` goes to validator `(L + v - p - 1) mod n`, the next ones in
//!   index order. So the leader of a failed view never leads the one after
//!   it, n failed views in a row never go to one validator twice, and
//!   after a failure at most f views in a row go to faulty validators.
//!   Plain round-robin after a TC (Carousel's choice) picked the failed
//!   leader again with probability 1/n: in the simulator, a validator
//!   equivocating as leader, or one that had just crashed, then failed two
//!   views in a row, the second with a doubled timeout. (A first attempt
//!   that only moved view `p + 2` on to the next validator gave that
//!   validator `p + 3` as well, and at n = 7, with a stale-QC validator
//!   after an equivocating one, stalled commits for 15 s.)
//!
//! A validator that crashed, stays silent or whose signatures do not
//! verify is in no QC formed after it stopped, so within two views it is
//! no longer a candidate; it comes back as soon as one of its votes is
//! among the first n - f that a leader gathers.
//!
//! # Why everyone agrees, and why it cannot break safety
//!
//! - *Checkable from the proposal alone.* A proposal carries its parent's
//!   header (bound to the block by the parent hash), so
//!   [`super::messages::verify_message`] checks the author without
//!   consulting anything a replica happens to hold.
//! - *Known to voters.* A replica voting for block `B` in view `v` holds
//!   `B`, so it computes the leader of `v + 1` from `B`'s header and sends
//!   its vote there; that leader forms the QC for `B` and proposes on it.
//! - *Restarts and catch-up.* It is a pure function of a block header and
//!   a view: a restarted replica computes the same leaders from the blocks
//!   it fetches, and a lagging one checks proposals it buffers.
//! - *Safety does not depend on it.* Replicas may disagree on the leader
//!   of a view after a TC: one holding the QC for `v - 1` expects the
//!   reputation leader, one whose highest QC is older counts failed views
//!   from another parent, and both may propose. That costs liveness in that view at most. Safety
//!   never relied on a unique leader: an honest replica signs at most one
//!   vote per view (`last_voted_view`, persisted before the vote leaves),
//!   so two blocks of one view never both get n - f votes, and the lock
//!   rule is untouched.
//!
//! # Faulty validators cannot starve honest leaders
//!
//! A Byzantine validator that always votes fast is always a candidate,
//! but it is never a candidate in the view after its own block, and the
//! QCs that decide the views after an honest leader's block are gathered
//! by that honest leader (the first n - f votes it gets). Which candidate
//! leads is drawn from the view number, which no one can grind (a block
//! hash could be). A Byzantine leader can choose which n - f of the votes it
//! received go into its QC and so steer the next view's leader among the
//! validators that voted, but not towards itself, and only in the views
//! after its own blocks; honest validators keep leading in the others
//! (the unit tests run long sequences with an always-voting Byzantine
//! validator and check that every honest one leads a fair share).
//!
//! What it does not catch: a validator that votes but never proposes is
//! still a candidate and still costs a view timeout whenever it is picked.

use crate::committee::Committee;
use crate::types::View;
use phalanx_chain::{BlockHeader, Justification, ValidatorIndex};
use phalanx_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How HotStuff picks the leader of a view. (PBFT's primary is always
/// round-robin: [`Committee::leader`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaderRule {
    /// Validator `v mod n` leads view `v`.
    RoundRobin,
    /// Among the signers of the QC in the parent block, skipping the
    /// parent's proposer (see the module docs).
    #[default]
    Reputation,
}

impl LeaderRule {
    pub const ALL: [LeaderRule; 2] = [LeaderRule::RoundRobin, LeaderRule::Reputation];

    pub fn name(self) -> &'static str {
        match self {
            LeaderRule::RoundRobin => "round-robin",
            LeaderRule::Reputation => "reputation",
        }
    }
}

impl fmt::Display for LeaderRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a leader rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown leader rule {0:?} (round-robin or reputation)")]
pub struct UnknownLeaderRule(pub String);

impl FromStr for LeaderRule {
    type Err = UnknownLeaderRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeaderRule::ALL
            .into_iter()
            .find(|r| r.name() == s.trim())
            .ok_or_else(|| UnknownLeaderRule(s.to_string()))
    }
}

/// The leader of `view` for a proposal whose block extends the block with
/// header `parent`, under the committee's rule.
pub fn leader(committee: &Committee, view: View, parent: &BlockHeader) -> ValidatorIndex {
    match committee.leader_rule() {
        LeaderRule::RoundRobin => committee.leader(view),
        LeaderRule::Reputation => reputation_leader(committee, view, parent),
    }
}

fn reputation_leader(committee: &Committee, view: View, parent: &BlockHeader) -> ValidatorIndex {
    let parent_view = match &parent.justification {
        Justification::Bft { view, .. } => View(*view),
        Justification::Genesis => View(0),
        Justification::ProofOfWork(_) => return committee.leader(view),
    };
    if parent_view.next() != view {
        return after_a_broken_chain(committee, view, parent_view, parent);
    }
    let candidates = candidates(committee, parent);
    let count = candidates.len() as u64;
    if count == 0 {
        return committee.leader(view);
    }
    usize::try_from(mix(view.0) % count)
        .ok()
        .and_then(|i| candidates.get(i).copied())
        .unwrap_or_else(|| committee.leader(view))
}

/// The leader of `view` on a parent from before `view - 1` (the views
/// in between failed): the validators after the failed view's leader, in
/// index order. The first failed view, `parent_view + 1`, was led by the
/// reputation leader on `parent`; the `k`-th view after it goes to the
/// `k`-th validator after that one (mod n). So n views in a row never go
/// to the same validator twice, and of any f + 1 of them one goes to an
/// honest validator, whatever the faulty ones' indices.
fn after_a_broken_chain(
    committee: &Committee,
    view: View,
    parent_view: View,
    parent: &BlockHeader,
) -> ValidatorIndex {
    let failed = reputation_leader(committee, parent_view.next(), parent);
    let skipped = view.0.saturating_sub(parent_view.0).saturating_sub(1);
    // Round-robin's arithmetic, started at the failed leader.
    committee.leader(View(u64::from(failed.0).wrapping_add(skipped)))
}

/// SplitMix64's finalizer: a fixed bijection of u64 whose low bits depend
/// on every bit of the input, so consecutive views pick candidates with no
/// pattern a leader could lock onto.
fn mix(view: u64) -> u64 {
    let mut z = view.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The signers of `parent`'s QC that are members, in index order, without
/// duplicates and without `parent`'s proposer.
fn candidates(committee: &Committee, parent: &BlockHeader) -> Vec<ValidatorIndex> {
    let Some(cert) = parent_cert_of(parent) else {
        return Vec::new();
    };
    let proposer = committee.index_of(&PublicKey(parent.proposer.0));
    let mut signers: Vec<ValidatorIndex> = cert
        .signatures
        .iter()
        .map(|s| s.validator)
        .filter(|v| committee.key(*v).is_some() && Some(*v) != proposer)
        .collect();
    signers.sort_unstable();
    signers.dedup();
    signers
}

fn parent_cert_of(header: &BlockHeader) -> Option<&phalanx_chain::BftCertificate> {
    match &header.justification {
        Justification::Bft { parent_cert, .. } => Some(parent_cert),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::test_support::{committee, empty_child};
    use phalanx_chain::{BftCertificate, Block, ConsensusKind, ValidatorSignature};
    use phalanx_crypto::{Keypair, Signature};
    use std::collections::BTreeMap;

    struct Net {
        keys: Vec<Keypair>,
        committee: Committee,
        genesis: Block,
    }

    fn net(n: usize) -> Net {
        let (keys, committee, genesis) = committee(ConsensusKind::Hotstuff, "leader", n, 40);
        Net {
            keys,
            committee,
            genesis,
        }
    }

    impl Net {
        /// A block of `view` by `proposer` on `parent`, whose QC (for
        /// `qc_view`) `signers` signed. Signatures are not checked here.
        fn block(
            &self,
            parent: &Block,
            view: u64,
            proposer: usize,
            qc_view: u64,
            signers: &[usize],
        ) -> Block {
            let parent_cert = BftCertificate {
                view: qc_view,
                block: parent.hash(),
                signatures: signers
                    .iter()
                    .map(|&i| ValidatorSignature {
                        validator: ValidatorIndex(i as u16),
                        signature: Signature([0; 64]),
                    })
                    .collect(),
            };
            empty_child(
                parent,
                self.keys[proposer].public().into(),
                view,
                Justification::Bft { view, parent_cert },
            )
        }

        fn leader(&self, view: u64, parent: &Block) -> usize {
            usize::from(leader(&self.committee, View(view), parent.header()).0)
        }
    }

    /// A small deterministic generator (tests only).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    #[test]
    fn names_parse_and_reputation_is_the_default() {
        for rule in LeaderRule::ALL {
            assert_eq!(rule.name().parse::<LeaderRule>(), Ok(rule));
        }
        assert!("random".parse::<LeaderRule>().is_err());
        assert_eq!(LeaderRule::default(), LeaderRule::Reputation);
        assert_eq!(net(4).committee.leader_rule(), LeaderRule::Reputation);
    }

    #[test]
    fn the_first_views_fall_back_to_round_robin() {
        let t = net(4);
        // View 1 on genesis, view 2 on a block whose QC is genesis': no
        // signers, so round-robin.
        assert_eq!(t.leader(1, &t.genesis), 1);
        let b1 = t.block(&t.genesis, 1, 1, 0, &[]);
        assert_eq!(t.leader(2, &b1), 2);
        // Failed views after b1: the rotation starts from view 2's
        // round-robin leader, so it is round-robin too.
        for view in 3..12 {
            assert_eq!(t.leader(view, &b1), (view % 4) as usize, "view {view}");
        }
        // A QC whose only signer is the parent's proposer: no candidate.
        let lonely = t.block(&b1, 2, 3, 1, &[3]);
        assert_eq!(t.leader(3, &lonely), 3);
    }

    #[test]
    fn after_failed_views_the_lead_rotates_on_from_the_failed_leader() {
        for n in [4usize, 7] {
            let t = net(n);
            let b1 = t.block(&t.genesis, 1, 1, 0, &[]);
            let all: Vec<usize> = (0..n).collect();
            for view in 3..200u64 {
                // A parent from view - 1 whose QC all signed: `failed`
                // leads `view`; if it fails, and the views after it, they
                // ride on TCs with the same parent.
                let parent = t.block(&b1, view - 1, 2, 1, &all);
                let failed = t.leader(view, &parent);
                let mut seen = vec![failed];
                for k in 1..2 * n as u64 {
                    let next = t.leader(view + k, &parent);
                    assert_eq!(next, (failed + k as usize) % n, "n {n} view {view} + {k}");
                    if k < n as u64 {
                        assert!(!seen.contains(&next), "n {n} view {view} + {k}: led twice");
                        seen.push(next);
                    }
                }
            }
            // Plain round-robin is round-robin after a TC too.
            let rr = t.committee.clone().with_leader_rule(LeaderRule::RoundRobin);
            let parent = t.block(&b1, 5, 2, 1, &all);
            for view in 6..20 {
                assert_eq!(
                    leader(&rr, View(view), parent.header()),
                    rr.leader(View(view))
                );
            }
        }
    }

    #[test]
    fn the_rule_is_a_function_of_view_and_parent_header() {
        let t = net(4);
        let b1 = t.block(&t.genesis, 1, 1, 0, &[]);
        let b2 = t.block(&b1, 2, 2, 1, &[0, 1, 2]);
        let again = t.block(&b1, 2, 2, 1, &[2, 1, 0, 1]);
        assert_ne!(b2.hash(), again.hash());
        // Signer order and duplicates do not matter; the view does.
        assert_eq!(t.leader(3, &b2), t.leader(3, &again));
        // Candidates {0, 1} (2 proposed the parent), picked by mix(3).
        let expected = [0, 1][(mix(3) % 2) as usize];
        assert_eq!(t.leader(3, &b2), expected);
        let rr = t.committee.clone().with_leader_rule(LeaderRule::RoundRobin);
        for view in 0..20 {
            assert_eq!(leader(&rr, View(view), b2.header()), rr.leader(View(view)));
        }
    }

    #[test]
    fn a_validator_that_never_votes_never_leads_and_no_one_leads_twice_in_a_row() {
        let t = net(4);
        let mut rng = Lcg(7);
        let mut parent = t.block(&t.genesis, 1, 1, 0, &[]);
        let mut last = 1;
        for view in 2..2_000u64 {
            let leader = t.leader(view, &parent);
            if view > 3 {
                assert_ne!(leader, 3, "view {view}: the silent validator leads");
                assert_ne!(leader, last, "view {view}: led twice in a row");
            }
            // 3 is down: every QC holds 0, 1 and 2.
            let mut signers = vec![0, 1, 2];
            signers.swap(0, rng.below(3));
            parent = t.block(&parent, view, leader, view - 1, &signers);
            last = leader;
        }
    }

    /// Leads per validator over a long chain in which validator `z` always
    /// votes first and, when it leads, picks the QC that keeps `target`
    /// from leading the next view (if any such QC exists); honest leaders
    /// put their own vote, `z`'s and the first other votes in theirs.
    fn leads_with_fast_byzantine(n: usize, z: usize, target: usize, views: u64) -> Vec<u64> {
        let t = net(n);
        let quorum = t.committee.quorum();
        let mut rng = Lcg(n as u64 * 1_000 + target as u64);
        let mut leads = vec![0u64; n];
        let mut parent = t.block(&t.genesis, 1, 1, 0, &[]);
        for view in 2..views {
            let leader = t.leader(view, &parent);
            leads[leader] += 1;
            let signers = if leader == z {
                worst_qc_for(&t, &parent, view, leader, target)
            } else {
                let mut others: Vec<usize> = (0..n).filter(|v| *v != leader && *v != z).collect();
                for i in (1..others.len()).rev() {
                    others.swap(i, rng.below(i + 1));
                }
                let mut s = vec![leader, z];
                s.extend(others.into_iter().take(quorum - 2));
                s
            };
            parent = t.block(&parent, view, leader, view - 1, &signers);
        }
        leads
    }

    /// The quorum of voters (all n voted) that Byzantine `me` puts in its
    /// block of `view` to keep `target` from leading `view + 1`.
    fn worst_qc_for(t: &Net, parent: &Block, view: u64, me: usize, target: usize) -> Vec<usize> {
        let n = t.committee.size();
        let quorum = t.committee.quorum();
        let mut fallback = Vec::new();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != quorum {
                continue;
            }
            let signers: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            let block = t.block(parent, view, me, view - 1, &signers);
            if t.leader(view + 1, &block) != target {
                return signers;
            }
            fallback = signers;
        }
        fallback
    }

    #[test]
    fn every_honest_validator_leads_with_an_always_voting_byzantine_one() {
        for (n, z) in [(4, 3), (4, 0), (7, 6)] {
            for target in (0..n).filter(|v| *v != z) {
                let views = 6_000;
                let leads = leads_with_fast_byzantine(n, z, target, views);
                let fair = views / n as u64;
                let honest_min = (0..n).filter(|v| *v != z).map(|v| leads[v]).min();
                let by_validator: BTreeMap<usize, u64> =
                    leads.iter().copied().enumerate().collect();
                // Every honest validator, the one the Byzantine works
                // against included, leads at least half a fair share...
                assert!(
                    honest_min.unwrap() >= fair / 2,
                    "n {n}, byzantine {z}, target {target}: {by_validator:?}"
                );
                // ...and the Byzantine one at most twice one.
                assert!(
                    leads[z] <= 2 * fair,
                    "n {n}, byzantine {z}, target {target}: {by_validator:?}"
                );
            }
        }
    }

    #[test]
    fn the_parent_hash_does_not_choose() {
        // Two parents that differ only in their timestamp (what a proposer
        // could grind) give the same next leader.
        let t = net(4);
        let b1 = t.block(&t.genesis, 1, 1, 0, &[]);
        let mut a = t.block(&b1, 2, 2, 1, &[0, 1, 3]);
        let b = a.clone();
        a.header_mut().timestamp_ms += 1;
        assert_ne!(a.hash(), b.hash());
        assert_eq!(t.leader(3, &a), t.leader(3, &b));
    }
}
