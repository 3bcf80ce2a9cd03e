//! Figures from samples: nearest-rank percentiles, a latency histogram
//! with fixed buckets, and a per-second timeline. Pure functions, shared by
//! `load` and `bench`.

use serde::{Deserialize, Serialize};

/// Upper bounds (inclusive, in ms) of the latency histogram's buckets,
/// about three per decade from 1 ms to 2 minutes; a last bucket
/// (`le_ms: null`) takes everything above.
pub const BUCKET_BOUNDS_MS: [u64; 17] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000,
    120_000,
];

/// Nearest-rank percentile `p` (0 to 100) of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50, p95, p99, max and mean of a set of latencies, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: u32,
    pub p95_ms: u32,
    pub p99_ms: u32,
    pub max_ms: u32,
    pub mean_ms: f64,
}

impl Latency {
    /// The figures of `sorted` (ascending), `None` if it is empty.
    pub fn of_sorted(sorted: &[u32]) -> Option<Latency> {
        let sum: u64 = sorted.iter().map(|v| u64::from(*v)).sum();
        Some(Latency {
            p50_ms: percentile(sorted, 50.0)?,
            p95_ms: percentile(sorted, 95.0)?,
            p99_ms: percentile(sorted, 99.0)?,
            max_ms: *sorted.last()?,
            mean_ms: sum as f64 / sorted.len() as f64,
        })
    }
}

/// One bucket of a histogram: values above the previous bucket's bound
/// and at most `le_ms` (`None`: no upper bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub le_ms: Option<u64>,
    pub count: u64,
}

/// The histogram of `values` over [`BUCKET_BOUNDS_MS`]; its counts sum to
/// `values.len()`.
pub fn histogram(values: &[u32]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = BUCKET_BOUNDS_MS
        .iter()
        .map(|b| Bucket {
            le_ms: Some(*b),
            count: 0,
        })
        .chain(std::iter::once(Bucket {
            le_ms: None,
            count: 0,
        }))
        .collect();
    for v in values {
        let i = BUCKET_BOUNDS_MS.partition_point(|b| *b < u64::from(*v));
        if let Some(bucket) = buckets.get_mut(i) {
            bucket.count += 1;
        }
    }
    buckets
}

/// One second of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Second {
    /// The second's start, from the start of the timed window (negative
    /// during the warmup).
    pub t_s: i64,
    /// Transactions due in this second by the rate schedule.
    pub offered: u64,
    /// Transactions sent for the first time in this second.
    pub submitted: u64,
    /// Transactions seen final in this second.
    pub finalized: u64,
    /// Blocks seen committed in this second.
    pub blocks: u64,
}

/// Per-second counts from times in ms since the run's origin; the timed
/// window starts `window_start_ms` after it.
#[derive(Debug, Clone)]
pub struct Timeline {
    window_start_ms: u64,
    seconds: Vec<Second>,
}

/// What a time counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Offered,
    Submitted,
    Finalized,
    Block,
}

impl Timeline {
    /// `length_ms` from the origin, the window starting at
    /// `window_start_ms` (a whole number of seconds keeps the window's
    /// seconds aligned; other values round the warmup up).
    pub fn new(window_start_ms: u64, length_ms: u64) -> Timeline {
        let warmup_s = window_start_ms.div_ceil(1_000);
        let seconds = length_ms.div_ceil(1_000).max(1);
        Timeline {
            window_start_ms,
            seconds: (0..seconds)
                .map(|s| Second {
                    t_s: s as i64 - warmup_s as i64,
                    ..Second::default()
                })
                .collect(),
        }
    }

    /// Counts `event` at `at_ms` from the origin (times past the end go to
    /// the last second).
    pub fn add(&mut self, event: Event, at_ms: u64) {
        let warmup_s = self.window_start_ms.div_ceil(1_000);
        let shifted = (at_ms + warmup_s * 1_000).saturating_sub(self.window_start_ms);
        let last = self.seconds.len().saturating_sub(1);
        let i = usize::try_from(shifted / 1_000).map_or(last, |i| i.min(last));
        if let Some(second) = self.seconds.get_mut(i) {
            match event {
                Event::Offered => second.offered += 1,
                Event::Submitted => second.submitted += 1,
                Event::Finalized => second.finalized += 1,
                Event::Block => second.blocks += 1,
            }
        }
    }

    pub fn into_seconds(self) -> Vec<Second> {
        self.seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_ordered() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        let l = Latency::of_sorted(&[1, 2, 3, 1_000]).unwrap();
        assert_eq!(
            (l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms),
            (2, 1_000, 1_000, 1_000)
        );
        assert!((l.mean_ms - 251.5).abs() < 1e-9);
        assert_eq!(Latency::of_sorted(&[]), None);
    }

    #[test]
    fn histogram_counts_every_value_once_in_its_bucket() {
        let values = [0, 1, 2, 3, 1_000, 1_001, 120_000, 120_001, u32::MAX];
        let h = histogram(&values);
        assert_eq!(h.len(), BUCKET_BOUNDS_MS.len() + 1);
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), values.len() as u64);
        let count = |le: Option<u64>| h.iter().find(|b| b.le_ms == le).unwrap().count;
        assert_eq!(count(Some(1)), 2);
        assert_eq!(count(Some(2)), 1);
        assert_eq!(count(Some(5)), 1);
        assert_eq!(count(Some(1_000)), 1);
        assert_eq!(count(Some(2_000)), 1);
        assert_eq!(count(Some(120_000)), 1);
        assert_eq!(count(None), 2);
    }

    #[test]
    fn timeline_seconds_count_from_the_window() {
        let mut t = Timeline::new(2_000, 5_500);
        t.add(Event::Offered, 0);
        t.add(Event::Submitted, 1_999);
        t.add(Event::Finalized, 2_000);
        t.add(Event::Block, 5_499);
        t.add(Event::Block, 60_000);
        let s = t.into_seconds();
        assert_eq!(
            s.iter().map(|s| s.t_s).collect::<Vec<_>>(),
            vec![-2, -1, 0, 1, 2, 3]
        );
        assert_eq!(s[0].offered, 1);
        assert_eq!(s[1].submitted, 1);
        assert_eq!(s[2].finalized, 1);
        assert_eq!(s[5].blocks, 2);
    }
}
