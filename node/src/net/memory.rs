//! An in-memory network for tests (being written).
