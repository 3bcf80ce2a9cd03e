//! Proof-of-work arithmetic that every node must compute bit for bit the
//! same way: the compact form of a target, the work a target stands for,
//! the difficulty retarget and the median-time-past rule.
//!
//! # Targets and their compact form
//!
//! A block's proof-of-work hash (SHA-256d of its header's canonical bytes,
//! read as a big-endian 256-bit number) must not exceed its target. A
//! header carries the target in Bitcoin's compact form ("nBits"), a `u32`:
//! the top byte `e` is the target's length in bytes, the low 23 bits the
//! mantissa `m` (its three most significant bytes), and bit 23 a sign bit
//! that a target may not set:
//!
//! ```text
//! target = m * 256^(e - 3)        (m >> 8 * (3 - e) when e < 3)
//! ```
//!
//! Only the canonical form of a target is accepted (the one
//! [`CompactTarget::from_target`] gives: no leading zero byte in the
//! mantissa unless the sign bit would be set, nothing lost when `e < 3`),
//! so one target has one encoding. Zero, negative and overflowing forms
//! are refused. Test vector (Bitcoin's genesis block):
//! `0x1d00ffff` is `0x00000000ffff0000…00` (26 zero bytes at the end).
//!
//! # Work
//!
//! The work of a block with target `T` is the expected number of hashes
//! it took: `floor(2^256 / (T + 1))`. Chain work is the sum along a
//! chain; the chain with the most work is the best one.
//!
//! # Retargeting
//!
//! Each block's target is fixed by its ancestors (the window ends at its
//! parent), so every node computes the same one:
//!
//! - the window is the last `W` blocks (the genesis block counts, with
//!   the genesis target and time); until the chain holds `W` blocks the
//!   target stays the genesis one, as Bitcoin keeps its first target for
//!   its first 2016 blocks: a window of two or three blocks measures
//!   nothing but the luck of one or two intervals, and a retarget on it
//!   swings the difficulty fourfold either way;
//! - `span` = newest minus oldest timestamp in the window, clamped to
//!   `[expected / 4, expected * 4]`, where `expected = (blocks - 1) *
//!   interval`;
//! - the next target is the mean of the window's targets times `span /
//!   expected`, at most the limit, rounded down to its compact form.
//!
//! Averaging the window's targets (rather than scaling the newest by the
//! whole window's ratio every block) keeps a per-block retarget from
//! correcting the same delay W times over; the clamp bounds what a run of
//! forged timestamps can do in one window. With a window of one block
//! there is nothing to measure and the target never changes.
//!
//! # Timestamps
//!
//! A block's timestamp must be later than the median of its last 11
//! ancestors' ([`median_time_past`]; fewer near genesis), and not more
//! than a configured drift ahead of the receiving node's clock (a local
//! check, applied on arrival).

use num_bigint::BigUint;
use num_traits::{One, ToPrimitive, Zero};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Timestamps the median-time-past rule looks back over.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// A target in compact form; see the module doc.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompactTarget(pub u32);

/// Why a compact target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("compact target {0} is negative (bit 23 set)")]
    Negative(CompactTarget),
    #[error("compact target {0} does not fit in 256 bits")]
    Overflow(CompactTarget),
    #[error("compact target {0} is zero: no hash can meet it")]
    Zero(CompactTarget),
    #[error("compact target {got} is not canonical: the same target is {canonical}")]
    NotCanonical {
        got: CompactTarget,
        canonical: CompactTarget,
    },
    #[error("compact target {0:?} is not 8 hex digits (like 1d00ffff)")]
    Syntax(String),
}

/// Why a block's proof of work was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("block's target is {got}, its ancestors give {expected}")]
    WrongTarget {
        expected: CompactTarget,
        got: CompactTarget,
    },
    #[error("proof-of-work hash {hash} is above the target {target}")]
    InsufficientWork { hash: String, target: CompactTarget },
    #[error("timestamp {got_ms} ms is not after the median of the last blocks, {median_ms} ms")]
    TimestampNotAfterMedian { median_ms: u64, got_ms: u64 },
    #[error(
        "timestamp {got_ms} ms is more than {drift_ms} ms ahead of this node's clock {now_ms} ms"
    )]
    TimestampTooFarAhead {
        now_ms: u64,
        drift_ms: u64,
        got_ms: u64,
    },
}

impl CompactTarget {
    /// The target this form stands for, if it is a valid, canonical,
    /// non-zero target.
    pub fn target(self) -> Result<BigUint, TargetError> {
        let target = self.decode_any()?;
        let canonical = CompactTarget::from_target(&target);
        if canonical != self {
            return Err(TargetError::NotCanonical {
                got: self,
                canonical,
            });
        }
        Ok(target)
    }

    /// Decodes any well-formed form, canonical or not.
    fn decode_any(self) -> Result<BigUint, TargetError> {
        let bits = self.0;
        let size = (bits >> 24) as usize;
        let mantissa = bits & 0x007f_ffff;
        if mantissa != 0 && bits & 0x0080_0000 != 0 {
            return Err(TargetError::Negative(self));
        }
        if mantissa == 0 {
            return Err(TargetError::Zero(self));
        }
        // The mantissa's significant bytes end up at bytes size-3..size of
        // the target; more than 32 bytes in all does not fit.
        let mantissa_bytes = (32 - mantissa.leading_zeros() as usize).div_ceil(8);
        if size > 32 + 3 - mantissa_bytes {
            return Err(TargetError::Overflow(self));
        }
        let target = if size <= 3 {
            BigUint::from(mantissa >> (8 * (3 - size)))
        } else {
            BigUint::from(mantissa) << (8 * (size - 3))
        };
        if target.is_zero() {
            return Err(TargetError::Zero(self));
        }
        Ok(target)
    }

    /// The canonical compact form of `target`, rounded down to the three
    /// most significant bytes.
    /// A target above 256 bits gives a form that [`CompactTarget::target`]
    /// refuses.
    pub fn from_target(target: &BigUint) -> CompactTarget {
        let mut size = usize::try_from(target.bits().div_ceil(8)).unwrap_or(usize::MAX);
        let mut mantissa: u32 = if size <= 3 {
            // Fits in the mantissa: shift it up to three bytes.
            (target << (8 * (3 - size))).to_u32().unwrap_or(0)
        } else {
            (target >> (8 * (size - 3))).to_u32().unwrap_or(0)
        };
        // The sign bit may not be set: move a byte into the exponent.
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        let exponent = u32::try_from(size).unwrap_or(u32::MAX).min(0xff);
        CompactTarget((exponent << 24) | mantissa)
    }
}

impl fmt::Display for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactTarget({:08x})", self.0)
    }
}

impl FromStr for CompactTarget {
    type Err = TargetError;

    /// Exactly eight lowercase hex digits, as Bitcoin prints nBits
    /// (docs/PROTOCOL.md, section 1: no prefix, no sign, no upper case,
    /// so that one target has one text form).
    fn from_str(s: &str) -> Result<Self, TargetError> {
        let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if s.len() != 8 || !s.as_bytes().iter().all(lower_hex) {
            return Err(TargetError::Syntax(s.to_owned()));
        }
        u32::from_str_radix(s, 16)
            .map(CompactTarget)
            .map_err(|_| TargetError::Syntax(s.to_owned()))
    }
}

/// A `u32` on the wire, eight hex digits in JSON and TOML.
impl Serialize for CompactTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for CompactTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            u32::deserialize(deserializer).map(CompactTarget)
        }
    }
}

/// The expected number of hashes to meet `target`: `floor(2^256 / (target
/// + 1))`.
pub fn work(target: &BigUint) -> BigUint {
    (BigUint::one() << 256) / (target + 1u8)
}

/// True if a proof-of-work hash (big-endian) meets `target`.
pub fn meets(pow_hash: &[u8; 32], target: &BigUint) -> bool {
    BigUint::from_bytes_be(pow_hash) <= *target
}

/// Checks a proof-of-work hash against a compact target.
pub fn check_work(pow_hash: &[u8; 32], bits: CompactTarget) -> Result<(), PowError> {
    let target = bits.target()?;
    if meets(pow_hash, &target) {
        Ok(())
    } else {
        Err(PowError::InsufficientWork {
            hash: hex::encode(pow_hash),
            target: bits,
        })
    }
}

/// What the retarget needs of one block in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBlock {
    pub timestamp_ms: u64,
    pub target: CompactTarget,
}

/// The retarget's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retarget {
    /// The block interval the chain aims at.
    pub interval_ms: u64,
    /// Blocks the retarget looks back over (at least 1).
    pub window: usize,
    /// The easiest target allowed.
    pub limit: BigUint,
}

impl Retarget {
    /// The target of the block after `window` (oldest first, ending at the
    /// parent; only the last [`Retarget::window`] blocks count).
    pub fn next(&self, window: &[WindowBlock]) -> Result<CompactTarget, TargetError> {
        let take = self.window.max(1).min(window.len());
        let window = window.get(window.len() - take..).unwrap_or_default();
        let (Some(oldest), Some(newest)) = (window.first(), window.last()) else {
            return Ok(CompactTarget::from_target(&self.limit));
        };
        // Not a full window yet (near genesis), or a window of one.
        if window.len() < self.window.max(2) {
            return Ok(newest.target);
        }
        let count = window.len() as u64;
        let mut sum = BigUint::zero();
        for block in window {
            sum += block.target.target()?;
        }
        let expected = (count - 1).saturating_mul(self.interval_ms).max(1);
        let span = newest
            .timestamp_ms
            .saturating_sub(oldest.timestamp_ms)
            .clamp((expected / 4).max(1), expected.saturating_mul(4));
        // mean * span / expected, in one division so nothing is lost
        // before the last step.
        let next = sum * span / (BigUint::from(count) * expected);
        let next = next.min(self.limit.clone()).max(BigUint::one());
        Ok(CompactTarget::from_target(&next))
    }
}

/// The median of the last [`MEDIAN_TIME_SPAN`] timestamps (all of them if
/// fewer), oldest first; `None` for none.
pub fn median_time_past(timestamps: &[u64]) -> Option<u64> {
    let take = MEDIAN_TIME_SPAN.min(timestamps.len());
    let mut last: Vec<u64> = timestamps.get(timestamps.len() - take..)?.to_vec();
    last.sort_unstable();
    last.get(last.len() / 2).copied()
}

/// Checks a block's timestamp: after the median of its ancestors' (oldest
/// first), and at most `drift_ms` ahead of `now_ms`.
pub fn check_timestamp(
    ancestors: &[u64],
    timestamp_ms: u64,
    now_ms: u64,
    drift_ms: u64,
) -> Result<(), PowError> {
    if let Some(median_ms) = median_time_past(ancestors)
        && timestamp_ms <= median_ms
    {
        return Err(PowError::TimestampNotAfterMedian {
            median_ms,
            got_ms: timestamp_ms,
        });
    }
    if timestamp_ms > now_ms.saturating_add(drift_ms) {
        return Err(PowError::TimestampTooFarAhead {
            now_ms,
            drift_ms,
            got_ms: timestamp_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    fn hex_target(s: &str) -> BigUint {
        BigUint::parse_bytes(s.as_bytes(), 16).unwrap()
    }

    fn big(limbs: [u64; 4]) -> BigUint {
        let bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_be_bytes()).collect();
        BigUint::from_bytes_be(&bytes)
    }

    #[test]
    fn bitcoin_genesis_bits_decode_to_its_target() {
        let bits: CompactTarget = "1d00ffff".parse().unwrap();
        let target = bits.target().unwrap();
        assert_eq!(
            target,
            hex_target("00000000ffff0000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(CompactTarget::from_target(&target), bits);
        // Bitcoin's regtest limit, and the work of its genesis target.
        let regtest = CompactTarget(0x207f_ffff).target().unwrap();
        assert_eq!(
            regtest,
            hex_target("7fffff0000000000000000000000000000000000000000000000000000000000")
        );
        // Bitcoin reports chainwork 0x100010001 for its genesis block.
        assert_eq!(work(&target), BigUint::from(0x1_0001_0001u64));
        assert_eq!(work(&regtest), BigUint::from(2u8));
        // The largest 256-bit target is worth one hash.
        assert_eq!(work(&((BigUint::one() << 256) - 1u8)), BigUint::one());
    }

    #[test]
    fn bad_forms_are_refused_by_name() {
        assert_eq!(
            CompactTarget(0x0480_0001).target(),
            Err(TargetError::Negative(CompactTarget(0x0480_0001)))
        );
        assert_eq!(
            CompactTarget(0x2301_0000).target(),
            Err(TargetError::Overflow(CompactTarget(0x2301_0000)))
        );
        assert_eq!(
            CompactTarget(0x1d00_0000).target(),
            Err(TargetError::Zero(CompactTarget(0x1d00_0000)))
        );
        // 0x01003456 means 0x00 (the mantissa shifted out): zero.
        assert!(matches!(
            CompactTarget(0x0100_3456).target(),
            Err(TargetError::Zero(_))
        ));
        // Leading zero bytes in the mantissa: 0xff * 256^27, written
        // canonically as 1d00ff00 (0xff00 * 256^26; a bare 0xff0000 would
        // set the sign bit).
        assert_eq!(
            CompactTarget(0x1e00_00ff).target(),
            Err(TargetError::NotCanonical {
                got: CompactTarget(0x1e00_00ff),
                canonical: CompactTarget(0x1d00_ff00),
            })
        );
        let bad_forms = [
            "1d00fff",
            "+1d00fff",
            "0x1d00ffff",
            "1D00FFFF",
            "1d00ffff ",
            "-1d00fff",
        ];
        for bad in bad_forms {
            assert!(
                matches!(bad.parse::<CompactTarget>(), Err(TargetError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "zz00ffff".parse::<CompactTarget>(),
            Err(TargetError::Syntax(_))
        ));
    }

    #[test]
    fn small_targets_round_trip() {
        for t in [
            1u64, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0x7f_ffff, 0x80_0000,
        ] {
            let target = BigUint::from(t);
            let bits = CompactTarget::from_target(&target);
            assert_eq!(bits.target().unwrap(), target, "{t:#x} as {bits}");
        }
    }

    #[test]
    fn human_readable_forms_are_hex_and_binary_is_a_u32() {
        let bits = CompactTarget(0x1d00_ffff);
        assert_eq!(serde_json::to_string(&bits).unwrap(), "\"1d00ffff\"");
        assert_eq!(
            serde_json::from_str::<CompactTarget>("\"1d00ffff\"").unwrap(),
            bits
        );
        assert!(serde_json::from_str::<CompactTarget>("\"0x1d00ffff\"").is_err());
        let wire = crate::encoding::encode(&bits);
        assert_eq!(
            crate::encoding::decode::<CompactTarget>(&wire, 8).unwrap(),
            bits
        );
    }

    #[test]
    fn work_is_checked_against_the_target() {
        let bits = CompactTarget(0x2000_ffff); // 0x00ffff00..: top byte zero
        let mut hash = [0u8; 32];
        assert!(check_work(&hash, bits).is_ok());
        hash[0] = 0x01;
        assert!(matches!(
            check_work(&hash, bits),
            Err(PowError::InsufficientWork { .. })
        ));
        hash[0] = 0x00;
        hash[1] = 0xff;
        hash[2] = 0xff;
        assert!(check_work(&hash, bits).is_ok());
        hash[3] = 0x01;
        assert!(check_work(&hash, bits).is_err());
    }

    fn steady(count: usize, interval_ms: u64, bits: CompactTarget) -> Vec<WindowBlock> {
        (0..count)
            .map(|i| WindowBlock {
                timestamp_ms: 1_000_000 + i as u64 * interval_ms,
                target: bits,
            })
            .collect()
    }

    fn rule() -> Retarget {
        Retarget {
            interval_ms: 2_000,
            window: 16,
            limit: CompactTarget(0x2000_ffff).target().unwrap(),
        }
    }

    #[test]
    fn on_schedule_the_target_stays() {
        let bits = CompactTarget(0x1f12_3456);
        for count in [1, 2, 5, 16, 40] {
            assert_eq!(rule().next(&steady(count, 2_000, bits)).unwrap(), bits);
        }
    }

    #[test]
    fn fast_blocks_make_it_harder_and_slow_ones_easier_within_the_clamp() {
        let bits = CompactTarget(0x1f12_3456);
        let target = bits.target().unwrap();
        // Twice as fast: half the target.
        let fast = rule().next(&steady(16, 1_000, bits)).unwrap();
        assert_eq!(fast, CompactTarget::from_target(&(&target / 2u8)));
        // Ten times slower: only four times easier (the clamp).
        let slow = rule().next(&steady(16, 20_000, bits)).unwrap();
        assert_eq!(slow, CompactTarget::from_target(&(&target * 4u8)));
        // All in one millisecond: a quarter.
        let burst = rule().next(&steady(16, 0, bits)).unwrap();
        assert_eq!(burst, CompactTarget::from_target(&(&target / 4u8)));
    }

    #[test]
    fn the_limit_caps_the_target() {
        let limit_bits = CompactTarget(0x2000_ffff);
        let next = rule().next(&steady(16, 60_000, limit_bits)).unwrap();
        assert_eq!(next, limit_bits);
    }

    #[test]
    fn only_the_window_counts() {
        let bits = CompactTarget(0x1f12_3456);
        let mut blocks = steady(10, 50_000, CompactTarget(0x1e00_ffff));
        let last = blocks.last().unwrap().timestamp_ms;
        blocks.extend((1..=16).map(|i| WindowBlock {
            timestamp_ms: last + i * 2_000,
            target: bits,
        }));
        assert_eq!(rule().next(&blocks).unwrap(), bits);
    }

    #[test]
    fn median_time_past_is_the_median_of_the_last_eleven() {
        assert_eq!(median_time_past(&[]), None);
        assert_eq!(median_time_past(&[5]), Some(5));
        assert_eq!(median_time_past(&[3, 1, 2]), Some(2));
        let times: Vec<u64> = (0..20).collect();
        assert_eq!(median_time_past(&times), Some(14));
        assert!(check_timestamp(&times, 15, 100, 10).is_ok());
        assert_eq!(
            check_timestamp(&times, 14, 100, 10),
            Err(PowError::TimestampNotAfterMedian {
                median_ms: 14,
                got_ms: 14
            })
        );
        assert!(matches!(
            check_timestamp(&times, 111, 100, 10),
            Err(PowError::TimestampTooFarAhead { .. })
        ));
    }

    proptest! {
        #![proptest_config(crate::test_seed::config())]

        #[test]
        fn compact_forms_round_trip(bits in any::<u32>()) {
            // Every form that decodes to a canonical target re-encodes to
            // itself; every target's canonical form decodes to it rounded
            // down to three significant bytes.
            if let Ok(target) = CompactTarget(bits).target() {
                prop_assert_eq!(CompactTarget::from_target(&target), CompactTarget(bits));
            }
        }

        #[test]
        fn encoding_rounds_down_to_three_bytes(limbs in any::<[u64; 4]>()) {
            let target = big(limbs);
            prop_assume!(!target.is_zero());
            let bits = CompactTarget::from_target(&target);
            let back = bits.target().unwrap();
            prop_assert!(back <= target);
            // At most the bits below the top 24 (or 16, after the sign
            // shift) are lost.
            let lost = &target - &back;
            prop_assert!(lost.bits() + 16 <= target.bits() || target.bits() <= 24);
        }

        #[test]
        fn more_target_is_less_work(a in any::<[u64; 4]>(), b in any::<[u64; 4]>()) {
            let (a, b) = (big(a), big(b));
            if a <= b {
                prop_assert!(work(&a) >= work(&b));
            } else {
                prop_assert!(work(&a) <= work(&b));
            }
        }
    }
}
