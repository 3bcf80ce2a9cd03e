//! Hash maps and sets for the hot paths, hashed with foldhash instead of
//! SipHash.
//!
//! Their keys are mostly BLAKE3 hashes and public keys: 32 bytes that
//! SipHash spent 6-8 % of the simulator's time on (docs/BENCH.md,
//! "Simulator"). foldhash is seeded at random per map like std's
//! `RandomState`, so an outsider still cannot pick keys that collide, and
//! nothing may depend on the iteration order (as before).
//!
//! Build them with `HashMap::default()` (or `with_capacity_and_hasher`).

/// `std::collections::HashMap` with foldhash's randomly seeded hasher.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash's randomly seeded hasher.
pub type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
