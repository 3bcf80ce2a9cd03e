//! What a local proof-of-work network is made of: the flags of `init` and
//! `up` (`--hashrate`, `--block-interval`, `--confirmations`,
//! `--total-hashrate`), the genesis `[pow]` section they give, and each
//! miner's hash-rate limit.
//!
//! # The initial target
//!
//! The miners are rate-limited (`[mining] hashrate_limit`), so the
//! network's total hash rate `R` is known when it is made. One block per
//! interval `I` takes `R * I` hashes on average, and a target `T` is met
//! by a hash with probability `(T + 1) / 2^256`, so the genesis asks for
//! `T = 2^256 / (R * I) - 1` (rounded down to its compact form). The
//! target limit is [`LIMIT_FACTOR`] times easier, so that the retarget
//! can follow a machine that does not reach the configured rate (a
//! loaded laptop, a debug build) down to that fraction of it.

use crate::sim::scenario::{parse_duration_ms, parse_hashrate};
use anyhow::{bail, ensure};
use phalanx_chain::genesis::{MAX_CONFIRMATIONS, PowParams};
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::{Amount, ValidatorIndex};
use std::collections::BTreeMap;

/// The default total hash rate of a local network, in hashes per second,
/// shared by its miners.
///
/// Measured on this repository's machine (2 vCPUs, "Intel Xeon
/// Processor", shared with other jobs): one `phalanx-node` (release build)
/// mining a `pow` genesis whose target no hash meets, with `[mining]
/// threads = 1, hashrate_limit = 0` (unlimited), reported `hash_rate`
/// 4.06 and 3.98 million hashes per second in `GET /status` while the
/// machine was otherwise quiet, and 2.4 to 2.8 million (2.74 million over
/// 20 s of `phalanx_mining_hashes_total` in `GET /metrics`) while other
/// jobs loaded both cores. So one core does about 4 million SHA-256d
/// hashes per second; half of it, rounded down to stay clear of a loaded
/// machine, is 1.5 million: the whole network then takes about a third of
/// one core to mine, however many miners share it.
pub const DEFAULT_TOTAL_HASHRATE: u64 = 1_500_000;
/// The default mean block interval.
pub const DEFAULT_BLOCK_INTERVAL: &str = "5s";
/// The default confirmations that make a block final.
pub const DEFAULT_CONFIRMATIONS: u64 = 6;
/// The retarget averages over this many blocks.
pub const RETARGET_WINDOW: u32 = 30;
/// New coins per block.
pub const BLOCK_REWARD: u64 = 50;
/// How far ahead of a node's clock a block's timestamp may be.
pub const MAX_FUTURE_DRIFT_MS: u64 = 15_000;
/// The target limit is this many times the initial target (a power of
/// 256: one more byte in the compact form).
pub const LIMIT_FACTOR: u64 = 256;
/// The easiest target a local network uses: a mantissa of `7fffff` at 32
/// bytes, about 2^255 (one hash in two meets it).
pub const EASIEST: CompactTarget = CompactTarget(0x207f_ffff);

/// The proof-of-work flags of `init` and `up`. Unset, a new network gets
/// the defaults; given to `up` for an existing network, they must agree
/// with it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PowArgs {
    /// Proof of work: MINER:PERCENT% of the network's hash rate, e.g.
    /// 2:40% (repeatable); the other miners share the rest equally (a
    /// miner left with 0% does not mine).
    #[arg(long, value_name = "SPEC", value_parser = parse_hashrate)]
    pub hashrate: Vec<(ValidatorIndex, u32)>,
    /// Proof of work: the mean block interval the genesis target aims at
    /// (e.g. 5s, 800ms) [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub block_interval: Option<u64>,
    /// Proof of work: confirmations that make a block final (the block
    /// itself and k - 1 on top) [default: 6].
    #[arg(long, value_name = "K")]
    pub confirmations: Option<u64>,
    /// Proof of work: the whole network's hash rate in hashes per second,
    /// shared by the miners as --hashrate says [default: 1500000, about a
    /// third of one core].
    #[arg(long, value_name = "HASHES_PER_SECOND")]
    pub total_hashrate: Option<u64>,
}

impl PowArgs {
    /// True if any flag is given.
    pub fn any(&self) -> bool {
        !self.hashrate.is_empty()
            || self.block_interval.is_some()
            || self.confirmations.is_some()
            || self.total_hashrate.is_some()
    }

    /// The flags with the defaults filled in, checked for `miners` miners.
    pub fn resolve(&self, miners: usize) -> anyhow::Result<PowPlan> {
        let block_interval_ms = match self.block_interval {
            Some(ms) => ms,
            None => parse_duration_ms(DEFAULT_BLOCK_INTERVAL).map_err(anyhow::Error::msg)?,
        };
        let confirmations = self.confirmations.unwrap_or(DEFAULT_CONFIRMATIONS);
        let total_hashrate = self.total_hashrate.unwrap_or(DEFAULT_TOTAL_HASHRATE);
        ensure!(block_interval_ms > 0, "--block-interval must be above 0");
        ensure!(
            (1..=MAX_CONFIRMATIONS).contains(&confirmations),
            "--confirmations must be from 1 to {MAX_CONFIRMATIONS}"
        );
        ensure!(total_hashrate > 0, "--total-hashrate must be above 0");
        let shares = shares(miners, &self.hashrate)?;
        Ok(PowPlan {
            block_interval_ms,
            confirmations,
            total_hashrate,
            shares,
        })
    }
}

/// A proof-of-work network to make.
#[derive(Debug, Clone, PartialEq)]
pub struct PowPlan {
    pub block_interval_ms: u64,
    pub confirmations: u64,
    /// Hashes per second of all miners together.
    pub total_hashrate: u64,
    /// Each miner's share of it, in percent (they add up to 100).
    pub shares: Vec<f64>,
}

impl PowPlan {
    /// Miner i's `hashrate_limit`, `None` if its share is nothing (it
    /// does not mine). At least 1: a limit of 0 would mean "unlimited".
    pub fn hashrate_limits(&self) -> Vec<Option<u64>> {
        self.shares
            .iter()
            .map(|percent| {
                (*percent > 0.0).then(|| {
                    let rate = self.total_hashrate as f64 * percent / 100.0;
                    (rate.round() as u64).max(1)
                })
            })
            .collect()
    }

    /// The genesis `[pow]` section: see the module doc.
    pub fn params(&self) -> anyhow::Result<PowParams> {
        let limits: u64 = self.hashrate_limits().into_iter().flatten().sum();
        let hashes_per_block =
            (u128::from(limits.max(1)) * u128::from(self.block_interval_ms) / 1_000).min(1 << 100);
        let initial_target = target_for(hashes_per_block);
        let target_limit = easier(initial_target, LIMIT_FACTOR);
        Ok(PowParams {
            initial_target,
            target_limit,
            block_interval_ms: self.block_interval_ms,
            retarget_window: RETARGET_WINDOW,
            confirmations: self.confirmations,
            block_reward: Amount(BLOCK_REWARD),
            max_future_drift_ms: MAX_FUTURE_DRIFT_MS,
        })
    }
}

/// Each of `miners` miners' share in percent: those `specs` name get
/// theirs, the others share the rest equally. The rules are the
/// simulator's: each named share 1 to 100 %, at most 100 % in all, exactly
/// 100 % if every miner is named.
pub fn shares(miners: usize, specs: &[(ValidatorIndex, u32)]) -> anyhow::Result<Vec<f64>> {
    let mut named: BTreeMap<usize, u32> = BTreeMap::new();
    for (index, percent) in specs {
        let i = usize::from(index.0);
        ensure!(
            i < miners,
            "--hashrate {i}:{percent}%: miner {i} does not exist (the network has {miners})"
        );
        ensure!(
            (1..=100).contains(percent),
            "--hashrate {i}:{percent}%: a share is 1 to 100 %"
        );
        if named.insert(i, *percent).is_some() {
            bail!("--hashrate gives miner {i} two shares");
        }
    }
    let set: u32 = named.values().sum();
    let others = miners - named.len();
    ensure!(
        set <= 100 && (others > 0 || set == 100),
        "--hashrate shares add up to {set} %: at most 100 % in all, and exactly 100 % if every \
         miner has one"
    );
    let rest = f64::from(100 - set) / others.max(1) as f64;
    Ok((0..miners)
        .map(|i| named.get(&i).map_or(rest, |p| f64::from(*p)))
        .collect())
}

/// The compact form of `floor(2^256 / hashes) - 1`, the target one hash
/// in `hashes` meets; [`EASIEST`] if that is easier still.
pub fn target_for(hashes: u128) -> CompactTarget {
    if hashes < 2 {
        return EASIEST;
    }
    // Long division of 2^256 (a one and 32 zero bytes) by `hashes`.
    let mut quotient = [0u8; 33];
    let mut remainder: u128 = 0;
    for (i, digit) in quotient.iter_mut().enumerate() {
        // `remainder < hashes`: no overflow for the hashes `params` gives
        // (below 2^101).
        let dividend = remainder * 256 + u128::from(i == 0);
        *digit = u8::try_from(dividend / hashes).unwrap_or(u8::MAX);
        remainder = dividend % hashes;
    }
    // Minus one.
    for digit in quotient.iter_mut().rev() {
        let (value, borrow) = digit.overflowing_sub(1);
        *digit = value;
        if !borrow {
            break;
        }
    }
    let compact = compact_of(&quotient);
    if compact > EASIEST || compact.target().is_err() {
        EASIEST
    } else {
        compact
    }
}

/// The canonical compact form of a big-endian number (as
/// `CompactTarget::from_target` computes it).
fn compact_of(be: &[u8]) -> CompactTarget {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let digits = be.get(start..).unwrap_or_default();
    let mut size = digits.len() as u32;
    let mut mantissa = digits
        .iter()
        .chain(std::iter::repeat(&0))
        .take(3)
        .fold(0u32, |m, b| (m << 8) | u32::from(*b));
    if mantissa & 0x0080_0000 != 0 {
        mantissa >>= 8;
        size += 1;
    }
    CompactTarget((size.min(0xff) << 24) | mantissa)
}

/// `target` made `factor` times easier (a power of 256: whole bytes), at
/// most [`EASIEST`].
pub fn easier(target: CompactTarget, factor: u64) -> CompactTarget {
    let bytes = factor.max(1).ilog2() / 8;
    let size = (target.0 >> 24) + bytes;
    let eased = CompactTarget((size.min(0xff) << 24) | (target.0 & 0x00ff_ffff));
    if size > 32 || eased > EASIEST || eased.target().is_err() {
        EASIEST
    } else {
        eased
    }
}

/// Expected hashes per block of a compact target, for printing: `2^256 /
/// (T + 1)`, as a float.
pub fn hashes_per_block(target: CompactTarget) -> f64 {
    let size = f64::from(target.0 >> 24);
    let mantissa = f64::from(target.0 & 0x007f_ffff);
    let t = mantissa * 256f64.powf(size - 3.0);
    2f64.powi(256) / (t + 1.0)
}

/// A work figure (hex, as `/status` gives it) as a float, for printing.
pub fn work_value(hex: &str) -> Option<f64> {
    let hex = hex.trim_start_matches("0x");
    if hex.is_empty() || hex.len() > 64 {
        return None;
    }
    hex.chars().try_fold(0f64, |acc, c| {
        c.to_digit(16).map(|d| acc * 16.0 + f64::from(d))
    })
}

/// A large number with two decimals and a unit: `812`, `1.25k`, `3.40M`,
/// `7.12G`, `1.00e15`.
pub fn short_number(value: f64) -> String {
    let units = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    if value >= 1e15 {
        return format!("{value:.2e}");
    }
    units.iter().find(|(scale, _)| value >= *scale).map_or_else(
        || format!("{value:.0}"),
        |(scale, unit)| format!("{:.2}{unit}", value / scale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(specs: &[(u16, u32)]) -> Vec<(ValidatorIndex, u32)> {
        specs
            .iter()
            .map(|(i, p)| (ValidatorIndex(*i), *p))
            .collect()
    }

    #[test]
    fn named_shares_are_kept_and_the_rest_is_shared_equally() {
        assert_eq!(shares(4, &[]).unwrap(), vec![25.0; 4]);
        assert_eq!(
            shares(4, &pct(&[(2, 40)])).unwrap(),
            vec![20.0, 20.0, 40.0, 20.0]
        );
        assert_eq!(
            shares(2, &pct(&[(0, 30), (1, 70)])).unwrap(),
            vec![30.0, 70.0]
        );
        // 100 % named: the others get nothing.
        assert_eq!(shares(3, &pct(&[(0, 100)])).unwrap(), vec![100.0, 0.0, 0.0]);
        for (specs, expected) in [
            (pct(&[(4, 10)]), "miner 4 does not exist"),
            (pct(&[(0, 0)]), "1 to 100 %"),
            (pct(&[(0, 60), (1, 50)]), "add up to 110 %"),
            (pct(&[(0, 10), (0, 10)]), "two shares"),
        ] {
            let err = shares(4, &specs).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let err = shares(2, &pct(&[(0, 30), (1, 30)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly 100 %"), "{err}");
    }

    #[test]
    fn a_miner_with_nothing_does_not_mine_and_the_others_split_the_total() {
        let plan = PowArgs {
            hashrate: pct(&[(1, 100)]),
            total_hashrate: Some(1_000),
            ..PowArgs::default()
        }
        .resolve(3)
        .unwrap();
        assert_eq!(plan.hashrate_limits(), vec![None, Some(1_000), None]);
        let plan = PowArgs::default().resolve(4).unwrap();
        assert_eq!(
            plan.hashrate_limits(),
            vec![Some(DEFAULT_TOTAL_HASHRATE / 4); 4]
        );
        assert_eq!(plan.block_interval_ms, 5_000);
        assert_eq!(plan.confirmations, 6);
    }

    #[test]
    fn targets_match_the_chains_own_arithmetic() {
        use phalanx_chain::pow::work;
        for hashes in [2u128, 3, 255, 256, 257, 7_500_000, 1 << 40, 123_456_789_012] {
            let compact = target_for(hashes);
            let target = compact.target().unwrap();
            // Rounded down to the compact form's 15 to 23 bits: a little
            // harder than asked for, by less than one part in 2^15.
            let expected_work = work(&target);
            let ratio = expected_work.to_string().parse::<f64>().unwrap() / hashes as f64;
            assert!(
                (1.0..1.0 + 1.0 / 32_768.0).contains(&ratio) || hashes == 2,
                "{hashes}: {compact} gives work {expected_work}"
            );
            assert_eq!(CompactTarget::from_target(&target), compact);
        }
        // 2^256 / 2^32 - 1 = 2^224 - 1: Bitcoin's difficulty-1 target is
        // 0x00000000ffff00..., this is 0xffffff00... at the same size.
        assert_eq!(target_for(1 << 32), CompactTarget(0x1d00_ffff));
        assert_eq!(target_for(1), EASIEST);
        assert_eq!(target_for(2), EASIEST);
    }

    #[test]
    fn the_limit_is_a_whole_number_of_bytes_easier_and_capped() {
        assert_eq!(
            easier(CompactTarget(0x1d00_ffff), 256),
            CompactTarget(0x1e00_ffff)
        );
        assert_eq!(easier(CompactTarget(0x2000_ffff), 256), EASIEST);
        assert_eq!(easier(CompactTarget(0x1f7f_ffff), 256), EASIEST);
    }

    #[test]
    fn the_default_network_makes_a_valid_genesis() {
        let plan = PowArgs::default().resolve(4).unwrap();
        let params = plan.params().unwrap();
        let initial = params.initial_target.target().unwrap();
        let limit = params.target_limit.target().unwrap();
        assert!(initial < limit);
        // About 7.5 million hashes (1.5 MH/s for 5 s) per block.
        let per_block = hashes_per_block(params.initial_target);
        assert!(
            (7.4e6..7.6e6).contains(&per_block),
            "{per_block} hashes per block"
        );
        assert_eq!(params.retarget_window, RETARGET_WINDOW);
        assert_eq!(params.block_reward, Amount(50));
        assert_eq!(params.max_future_drift_ms, 15_000);
    }

    #[test]
    fn numbers_print_short() {
        assert_eq!(short_number(812.0), "812");
        assert_eq!(short_number(1_250.0), "1.25k");
        assert_eq!(short_number(1_500_000.0), "1.50M");
        assert_eq!(short_number(2.5e16), "2.50e16");
        assert_eq!(work_value("ff"), Some(255.0));
        assert_eq!(work_value("zz"), None);
    }
}
