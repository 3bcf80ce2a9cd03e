//! Catch-up: blocks a replica knows final (or must re-propose) but does
//! not hold are asked for by hash, with their ancestors, from the other
//! replicas in turn; answers are checked against what was asked.

use super::replica::{Effect, MAX_OUTSTANDING_REQUESTS, Replica};
use crate::catchup::{self, SyncMessage};
use crate::ledger::Ledger;
use crate::types::View;
use phalanx_chain::{Block, Hash, ValidatorIndex};
use phalanx_crypto::maps::HashSet;

impl Replica {
    /// The other replicas, in index order.
    fn others(&self) -> Vec<ValidatorIndex> {
        self.committee.members().filter(|v| *v != self.me).collect()
    }

    /// The next other replica to ask, in turn.
    fn next_peer(&mut self) -> Option<ValidatorIndex> {
        let others = self.others();
        let count = others.len() as u64;
        if count == 0 {
            return None;
        }
        let turn = self.sync_retries % count;
        self.sync_retries = self.sync_retries.wrapping_add(1);
        usize::try_from(turn)
            .ok()
            .and_then(|t| others.get(t))
            .copied()
    }

    /// Asks for a block (at most once per view per block), from `from` or
    /// the next replica in turn.
    pub(super) fn request(&mut self, hash: Hash, from: Option<ValidatorIndex>) {
        if self.requested.get(&hash).is_some_and(|v| *v >= self.view) {
            return;
        }
        if self.requested.len() >= MAX_OUTSTANDING_REQUESTS {
            let horizon = View(self.view.0.saturating_sub(4));
            self.requested.retain(|_, asked| *asked >= horizon);
            if self.requested.len() >= MAX_OUTSTANDING_REQUESTS {
                return;
            }
        }
        let Some(to) = from.filter(|f| *f != self.me).or_else(|| self.next_peer()) else {
            return;
        };
        self.requested.insert(hash, self.view);
        self.out.push(Effect::SendSync {
            to,
            message: SyncMessage::Request { hash },
        });
    }

    /// Asks again, from the next replica in turn, for every block still
    /// missing (the request or its answer may have been lost, or the
    /// replica asked may be down).
    pub(super) fn retry_requests(&mut self) {
        let missing: Vec<Hash> = self.requested.keys().copied().collect();
        for hash in missing {
            let Some(to) = self.next_peer() else {
                return;
            };
            self.requested.insert(hash, self.view);
            self.out.push(Effect::SendSync {
                to,
                message: SyncMessage::Request { hash },
            });
        }
    }

    pub(super) fn on_sync(
        &mut self,
        from: ValidatorIndex,
        message: SyncMessage,
        ledger: &mut dyn Ledger,
    ) {
        match message {
            SyncMessage::Request { hash } => {
                let blocks = catchup::ancestors(hash, |h| self.block_for_peer(h, ledger));
                if !blocks.is_empty() {
                    self.out.push(Effect::SendSync {
                        to: from,
                        message: SyncMessage::Response { blocks },
                    });
                }
            }
            SyncMessage::Response { blocks } => {
                self.on_blocks(blocks, ledger);
                self.execute(ledger);
                self.retry_waiting(ledger);
                self.propose(ledger);
            }
        }
    }

    fn block_for_peer(&self, hash: &Hash, ledger: &dyn Ledger) -> Option<Block> {
        if *hash == self.head.hash() {
            return Some(self.head.clone());
        }
        self.log
            .block(hash)
            .cloned()
            .or_else(|| ledger.committed_block(hash))
    }

    /// Keeps the blocks that were asked for, or are ancestors of those,
    /// above the executed head.
    fn on_blocks(&mut self, blocks: Vec<Block>, ledger: &mut dyn Ledger) {
        let mut wanted: HashSet<Hash> = self.requested.keys().copied().collect();
        for block in blocks {
            let hash = block.hash();
            if !wanted.contains(&hash) || block.header().height <= self.executed() {
                continue;
            }
            ledger.observe_block(&block);
            wanted.insert(block.header().parent);
            self.requested.remove(&hash);
            self.log.insert_block(block);
        }
    }
}
