//! Chained HotStuff (Yin, Malkhi, Reiter, Gueta, Abraham, PODC 2019,
//! event-driven chained variant), with a Jolteon/DiemBFT-style pacemaker.
//!
//! # The protocol as implemented
//!
//! - **Views and leaders.** Views start at 1 (block 0, genesis, has view 0
//!   and a genesis QC with no signatures). Who leads view `v` is a
//!   function of `v` and of the header of the block a proposal for `v`
//!   extends ([`leader`]). Under the default rule, *reputation*, if that
//!   parent was proposed in `v - 1`, the leader is one of the validators
//!   that signed the QC inside the parent's header, other than the
//!   parent's proposer, picked by `v`; after a broken chain (a proposal
//!   on a TC) and in the first two views it is validator `v mod n`. A
//!   crashed or silent validator is in no new QC, so it stops being
//!   picked within two views instead of costing a view timeout every `n`
//!   views. The *round-robin* rule (`v mod n` always) remains as
//!   [`LeaderRule::RoundRobin`]. A proposal carries its parent's header,
//!   so its author is checked from the proposal alone.
//! - **Proposals.** The leader of `v` proposes a block whose header carries
//!   `v` and a certificate over its parent: its highest QC (`high_qc`). A
//!   proposal is *justified* if that QC is for view `v - 1`, or if it comes
//!   with a timeout certificate (TC) for `v - 1` and its QC is at least as
//!   high as the TC's. The leader never proposes twice in a view (the view
//!   is persisted before the proposal leaves).
//! - **Votes.** A replica in view `v` votes for a justified proposal of `v`
//!   at most once (`v > last_voted_view`), only after the caller's
//!   [`crate::Ledger`] has validated the block against its parent's state,
//!   and only if the **safety rule** holds: the block extends the locked
//!   block, or its parent QC's view is higher than the locked QC's. Votes go
//!   to the leader of `v + 1` on the voted block (the one that gathers its
//!   QC and proposes on it). A replica still in `v` a quarter of a base
//!   timeout later re-sends its vote to every validator (and again each
//!   quarter), so a QC forms even when that leader is down. n - f votes for
//!   one block in one view form a QC, wherever they are gathered; a QC for
//!   view `v` moves a replica to view `v + 1`.
//! - **Lock (two-chain).** On a block `b*` whose QC certifies `b''`, whose
//!   own QC certifies `b'`: the lock moves up to that QC for `b'` if its view
//!   is higher than the locked QC's.
//! - **Commit (three-chain).** If `b''`, `b'` and `b` (`b'`'s parent) are
//!   direct parents in consecutive views (`b''.view = b'.view + 1 =
//!   b.view + 2`), `b` commits, and with it every uncommitted ancestor, in
//!   height order.
//! - **Pacemaker.** Each view has a timer, `first × 2^k` capped, where `k`
//!   counts views in a row that ended without a QC; a QC resets it.
//!   `first` is the base timeout, or `timeout_factor` times the
//!   second-longest of the last 16 gaps between QCs if that is longer
//!   ([`crate::view_timeout`]): short while rounds are quick, longer while
//!   load slows them. A replica with no transaction waiting gives the
//!   leader its empty-block delay once more before timing out. When the
//!   timer fires a replica stops voting in the view and broadcasts a signed
//!   timeout carrying its highest QC (and repeats it while stuck), along
//!   with the vote it cast in that view, unchanged: that vote went to the
//!   next leader alone, and if that leader is the faulty one its QC would
//!   be lost (with one faulty validator in four, round-robin leaders would
//!   then never give a three-chain four honest leaders in a row). f + 1
//!   timeouts for a view at least the replica's own make it time out too
//!   (so views resynchronize after a partition heals); n - f form a TC that
//!   moves everyone to the next view, whose leader proposes with the TC.
//!   A replica that timed out in `v - 1` after voting there, and then
//!   reached `v` on a QC for the block it voted for (formed elsewhere from
//!   the re-sent votes), times out in `v` at once: `v`'s leader is the one
//!   its vote went to, which failed to form that QC for a whole timeout.
//!   A crashed leader then costs one view timeout, not two.
//! - **Forwarding.** Every new valid message a replica receives is
//!   broadcast again once (deduplicated by content), keeping its author's
//!   signature, so it reaches honest replicas even when its author's links
//!   are cut. It can be switched off to measure the protocol alone.
//! - **Batching.** With `Config::max_batch_delay_ms` above 0, a leader
//!   entering its view proposes at once only if the ledger says a block
//!   would be worth it (`Ledger::ready_to_propose`: a full batch, or
//!   uncommitted transactions that need blocks on top to commit);
//!   otherwise it proposes when `Input::TransactionsAvailable` finds the
//!   ledger ready, or when the delay runs out, whichever comes first. An
//!   idle network thus makes one empty block per delay instead of one per
//!   round trip. With `Config::empty_block_delay_ms` above the batch delay,
//!   a leader whose pool is empty (`Ledger::has_pending_transactions`)
//!   waits that longer delay instead, and a transaction arriving brings
//!   the proposal forward to the batch delay counted from when the leader
//!   began to wait (at once if that has passed): an idle chain grows
//!   slowly (less disk, fewer messages) without slowing the first
//!   transaction down.
//! - **Catch-up.** A proposal whose parent is unknown is buffered (bounded)
//!   while the parent is fetched by hash, with up to 15 ancestors, from the
//!   proposal's author. Each time the view timer fires, every parent a
//!   buffered proposal still waits for is asked for again, from the other
//!   validators in turn (the request or the answer may have been lost, or
//!   the author may be down).
//!   Committed blocks come from the caller's ledger.
//!
//! # Safety data, and the order of effects
//!
//! `last_voted_view`, the locked QC, the highest QC, the last proposed view
//! and the last vote and timeout signed are [`SafetyData`]. Whenever one of
//! them changes in a way a message depends on, [`Effect::PersistSafety`] is
//! emitted **before** the message's send or broadcast effect. The caller
//! must make it durable (write and flush) before carrying out the effects
//! after it; otherwise a crash and restart could sign a conflicting vote.
//! Asked to vote or time out again in the same view, a replica re-sends the
//! message it already signed.
//!
//! # Departures from the paper
//!
//! - The paper's pacemaker is left abstract; this one is Jolteon's
//!   (timeouts, TCs, f + 1 amplification), which gives view synchronization
//!   after asynchrony.
//! - The paper inserts dummy blocks for skipped views, so "direct parent"
//!   implies consecutive views; here views are carried in blocks and the
//!   commit rule checks that they are consecutive. Safety is the paper's
//!   argument: two conflicting blocks would each need a QC from n - f
//!   replicas in consecutive views, whose intersection contains an honest
//!   replica that locked on one chain and, by the safety rule, could not
//!   have voted for the other.
//! - Justified-view checks (QC or TC for `v - 1`) keep a Byzantine leader
//!   from burning future views; they affect liveness only.
//! - Leaders are not round-robin by default but chosen by reputation
//!   (Carousel, Cohen et al., FC 2022; see [`leader`]). After a TC,
//!   replicas holding the QC for `v - 1` and replicas holding only the TC
//!   may expect different leaders for `v`, and both may propose. Safety
//!   never rested on a unique leader: an honest replica signs at most one
//!   vote per view (persisted before it leaves), so two blocks of one view
//!   never both get n - f votes, and the lock and commit rules are those
//!   of the paper. Equivocation evidence is therefore kept per author: two
//!   proposals of one view by two authors prove nothing.
//!
//! # Layout
//!
//! [`Replica`] (`replica.rs`) is the core: it takes inputs, asks its
//! components and emits effects. The components never call it back: the
//! safety rules (`safety.rs`), the pacemaker (`pacemaker.rs`), the block
//! tree and its three-chain walk (`block_tree.rs`), the leader rule
//! (`leader.rs`), the vote collector (`votes.rs`), catch-up bookkeeping
//! (`catch_up.rs`), the leader's pacing and building (`proposer.rs`),
//! message intake and forwarding (`intake.rs`), and Byzantine behaviours
//! for simulations (`byzantine.rs`). `messages.rs` holds the messages and their checks,
//! `seam.rs` puts the replica on the protocol seam.

mod block_tree;
mod byzantine;
mod catch_up;
mod config;
mod intake;
mod io;
pub mod leader;
mod messages;
mod pacemaker;
mod proposer;
mod replica;
mod safety;
mod seam;
#[cfg(test)]
mod tests;
mod votes;

pub use crate::catchup::{MAX_SYNC_BLOCKS, MAX_SYNC_BYTES, SyncMessage, decode_sync};
pub use crate::certificate::CertError;
pub use config::Config;
pub use io::{Effect, Evidence, Input, Timer};
pub use leader::{LeaderRule, UnknownLeaderRule};
pub use messages::{
    MAX_MESSAGE_BYTES, MessageError, Payload, Proposal, QuorumCert, SignedMessage, Timeout,
    TimeoutCert, TimeoutSignature, Verified, Vote, block_view, genesis_qc, parent_cert, sign,
    signing_bytes, verify_decoded, verify_message, verify_qc, verify_tc,
};
pub use replica::Replica;
pub use safety::SafetyData;
pub use seam::{BEHAVIOURS, HotStuff, Message};
