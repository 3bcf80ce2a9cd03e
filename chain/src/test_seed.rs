//! Seeds for randomized tests: every run prints the seed it used, and
//! `PHALANX_SEED=<n>` replays it.

use proptest::test_runner::{Config, RngSeed};

/// The seed from `PHALANX_SEED`, or a fresh one; printed either way (libtest
/// shows it when a test fails).
pub fn seed() -> u64 {
    let seed = match std::env::var("PHALANX_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PHALANX_SEED must be a u64, got {text:?}")),
        Err(_) => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        }
    };
    eprintln!("PHALANX_SEED={seed}");
    seed
}

/// A proptest configuration seeded by [`seed`], without regression files
/// (the printed seed replays a failure).
pub fn config() -> Config {
    Config {
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        ..Config::default()
    }
}
