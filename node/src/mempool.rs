//! Transactions waiting for a block (being written).

/// The node's mempool.
#[derive(Debug, Default)]
pub struct Mempool;
