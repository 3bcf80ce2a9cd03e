//! PBFT (Castro & Liskov, "Practical Byzantine Fault Tolerance", OSDI
//! 1999; view changes with signatures as in "Practical Byzantine Fault
//! Tolerance and Proactive Recovery", TOCS 2002) ordering the blocks of the
//! hash-chained ledger.
//!
//! # The protocol as implemented
//!
//! - **Views and primaries.** Views start at 0; the primary of view `v` is
//!   validator `v mod n`. n = 3f + 1; a quorum is n - f.
//! - **Sequence numbers are heights.** The primary assigns the next height
//!   to a block built on the block it assigned the height below (or the
//!   executed head) and broadcasts a signed PRE-PREPARE carrying the block.
//!   The block's header carries its first view and, as its justification,
//!   the newest commit certificate the primary knows: the certificate of
//!   an ancestor (the genesis certificate at first).
//! - **Prepare (PBFT 4.2).** A backup accepts a pre-prepare if it is of its
//!   view, in the watermark window, the first it accepted for that view and
//!   height, extends the block it accepted at the height below in the same
//!   view (or its executed head), carries a commit certificate that
//!   verifies against the ancestor it names, fits the view's plan (below),
//!   and is valid on its parent's state (the caller's [`crate::Ledger`]).
//!   It then broadcasts PREPARE. *Prepared* at a height in a view = the
//!   pre-prepare plus 2f matching prepares from distinct other replicas.
//! - **Commit (PBFT 4.2).** A replica broadcasts COMMIT for a height once
//!   it is prepared there **and at every height between its executed head
//!   and it**, in the same view (rule C, see below). n - f matching commits
//!   form a commit certificate: the block is final. Final blocks execute
//!   strictly in height order; a replica that holds a certificate (from
//!   commits, or carried in a later block's header, or a stable checkpoint)
//!   for a block it lacks fetches it and its ancestors by hash.
//! - **Pipelining.** The primary keeps up to `max_in_flight` heights (4 by
//!   default) proposed and not executed, inside the window. A height takes
//!   three one-way delays from pre-prepare to commit, and a primary that
//!   has a batch proposes about once per delay, so about three heights in
//!   flight keep the pipeline full; one more absorbs jitter. More would
//!   only lengthen the speculative chain a view change has to sort out.
//! - **Checkpoints (PBFT 4.3).** After executing a multiple of
//!   `checkpoint_interval` (K, 16 by default) a replica broadcasts a signed
//!   CHECKPOINT with the block hash and state root; n - f matching form the
//!   stable checkpoint, the low watermark. Per-height records, votes and
//!   certificates at or below it are dropped. Messages for heights at or
//!   below the low watermark or above the high one (low + L, L =
//!   `watermark_window`, 32 by default) are refused. A replica re-sends its
//!   own checkpoint while it is not stable (each time its view timer
//!   fires): the window cannot move without it.
//! - **View change (PBFT 4.4, TOCS 4.5).** A replica whose view executes
//!   nothing for its timeout broadcasts a signed VIEW-CHANGE for the next
//!   view with its stable checkpoint certificate and its P-set: for each
//!   height above the checkpoint, the prepared (or commit) certificate of
//!   the highest view it saw. The new primary gathers n - f (its own
//!   first) into a NEW-VIEW; the plan it carries is recomputed by every
//!   replica from the view changes before it enters the view
//!   ([`select`]): re-propose the highest-view certified block at each
//!   height above the highest checkpoint while they form a chain, then
//!   empty blocks up to the highest certified height. The primary then
//!   sends those pre-prepares (the re-proposed blocks keep their original
//!   headers) and continues with new blocks. The first timeout is the base,
//!   or `timeout_factor` times the second-longest of the last 16 gaps
//!   between executions if that is longer ([`crate::view_timeout`]), and
//!   an idle backup (nothing waiting, nothing in flight) gives the primary
//!   its empty-block delay once more. The timeout doubles with each
//!   view change in a row that brings no progress (capped); a replica
//!   waiting for a new view moves on to the next view when it expires.
//!   f + 1 view changes for later views make a replica join the smallest
//!   (PBFT 4.5.2). A replica that missed a new view gets it from anyone
//!   already in it, who answers its view change with it. A replica still
//!   in the normal case of an older view (back from a crash, catching up
//!   on blocks and so never timing out) asks for the next view as soon as
//!   f + 1 replicas sent it normal-case messages of later views, and is
//!   answered the same way.
//! - **Forwarding.** Every new valid message a replica receives is
//!   broadcast again once (deduplicated by content), keeping its author's
//!   signature. It can be switched off to measure the protocol alone.
//! - **Batching.** With `max_batch_delay_ms` above 0 the primary proposes
//!   when the ledger has a full batch, when transactions wait and no
//!   height is in flight (the pipeline is idle: waiting would only add
//!   latency), or when the delay (counted from when it began to wait)
//!   runs out. With nothing in the pool and nothing
//!   in flight it waits `empty_block_delay_ms` and proposes an empty block:
//!   the heartbeat that tells backups it is alive (their view timer runs
//!   whenever nothing executes, as Sawtooth PBFT's idle timeout does).
//!
//! # Safety data, and the order of effects
//!
//! The view (and whether it is changing), what was signed per height and
//! view (pre-prepare, prepare, commit), the P-set, the stable checkpoint,
//! the last view change and the current view's plan are [`SafetyData`].
//! Every change is persisted ([`Effect::PersistSafety`]) **before** any
//! message that depends on it is sent, so a restarted replica never signs
//! a second, different PRE-PREPARE, PREPARE or COMMIT for one view and
//! height, never forgets a prepared certificate it committed on, and never
//! makes a second new view. A primary that restarts in the middle of its
//! view does not propose again in it (it no longer holds the blocks it
//! proposed) and waits for the view to change.
//!
//! # Departures from the paper, and why they are safe
//!
//! - **Blocks instead of client requests.** A pre-prepare orders one block
//!   of transactions; clients are not answered by replicas but see blocks
//!   final through the node. Validity of a block (its transactions apply on
//!   its parent's state) is checked before preparing it, like a request's
//!   authentication.
//! - **Signatures instead of MACs**, as in the TOCS version: every message
//!   is signed (so it can be forwarded, and carried inside view changes
//!   and new views as proof). Prepares and commits sign the block's parent
//!   hash as well as its own, so a certificate says where in the chain its
//!   block sits without the block itself.
//! - **The parent hash and sequence numbers.** In the paper, requests at
//!   different sequence numbers are independent; here the block at height
//!   h names the block at h - 1, so a view's pre-prepares must form one
//!   chain (a backup accepts h only on the block it accepted at h - 1 in the
//!   same view), and a new view's re-proposals must too. Rule C makes that
//!   possible: a replica commits h only after preparing, in that view, every
//!   height from its executed head up to h. So a block committed anywhere
//!   has, in any quorum of view changes, a certificate of the highest view
//!   at its height *and at every height below it* down to the checkpoint,
//!   each linking to the one below; the plan's walk reaches it, and
//!   re-proposes it with all its ancestors (the paper's argument for one
//!   sequence number, applied height by height along the chain). A
//!   certificate above a gap or a broken link never committed anywhere and
//!   is dropped; the plan fills the heights up to the highest certified one
//!   with empty blocks (the paper's null requests).
//! - **Committing on a certificate.** A replica executes a block once it
//!   holds any proof that it is final (n - f commits, a certificate in a
//!   later block's header, a stable checkpoint), without being prepared
//!   itself: n - f commits mean f + 1 honest replicas prepared it, which is
//!   all the paper's safety argument uses.
//! - **View timer.** The paper starts a backup's timer when a request is
//!   waiting; here the primary proposes at least an empty block when idle,
//!   and a view that executes nothing for the timeout is changed.
//! - **The header's certificate** is checked by a backup against the
//!   ancestor it names before the block is accepted (only a replica that
//!   holds the chain knows that ancestor's height and parent); every other
//!   certificate inside a message is checked when the message is verified.

mod byzantine;
mod collect;
mod fetch;
mod log;
mod messages;
mod normal;
mod primary;
mod replica;
mod seam;
pub mod select;
#[cfg(test)]
mod tests;
mod view_change;

pub use messages::{
    Certified, Checkpoint, CheckpointCert, CommitCert, MAX_MESSAGE_BYTES, MessageError, NewView,
    Payload, PrePrepare, PreparedCert, SignedMessage, Verified, ViewChange, Vote, sign,
    signing_bytes, verify_decoded, verify_message,
};
pub use replica::{Config, Effect, Evidence, Input, Replica, SafetyData, Sent, Timer};
pub use seam::{BEHAVIOURS, Message, Pbft};
