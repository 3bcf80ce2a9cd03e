//! The engine that runs signed transactions through a network and
//! measures them: the workload signed in advance ([`plan`]), what became
//! of each transaction ([`book`]), the submitter ([`drive`]), the
//! finality follower ([`follow`]) and the figures ([`tally`], [`stats`]).
//! `load` runs on it.

pub mod book;
pub mod drive;
pub mod follow;
pub mod plan;
pub mod stats;
pub mod tally;
