//! The view timer's length, shared by the BFT protocols: a first timeout
//! that follows the pace the committee has lately made progress at, and
//! doubles for each failed view in a row.
//!
//! A fixed first timeout has to be chosen for the slowest moment a healthy
//! committee ever has. At full load a round can take half a second, so the
//! timeout must be seconds long, and every failed leader then stalls a
//! lightly loaded chain, whose rounds take milliseconds, for seconds. Here
//! the first timeout is the configured base or `factor` times the
//! second-longest of the last [`WINDOW`] gaps between progress events,
//! whichever is longer: it is the base while rounds are quick and grows
//! when they slow. (The second-longest, so that one outlier does not set
//! the pace: in the simulator, one gap stretched by a lossy moment made
//! one replica's timer five times its peers' and slowed a recovery from
//! 4.3 s to 15 s.)
//!
//! Only gaps that began with transactions waiting count: an idle leader
//! waits for its empty-block delay on purpose, and that is not the pace of
//! the committee. A gap that a failed view or a recovery (a vote re-sent
//! because its QC did not come) interrupts is not counted either: it
//! measures the fault, and counting it would make the next fault slower
//! to get over. An idle replica extends its first timeout once by the
//! empty-block delay ([`ViewTimeout::idle_extension`]) so that it does not
//! give up on a leader that is waiting to send an empty block.
//!
//! Everything here is a function of the inputs' times, so the simulator
//! replays it exactly.

use crate::types::TimeMs;
use std::collections::VecDeque;

/// The factor protocols use unless told otherwise.
pub const DEFAULT_TIMEOUT_FACTOR: u64 = 4;

/// Progress gaps remembered.
pub const WINDOW: usize = 16;

/// Back-off doubles the timer at most this many times in a row (before the
/// maximum caps it anyway).
const MAX_BACK_OFF_STEPS: u32 = 20;

/// The first timeout and back-off of a replica's views.
#[derive(Debug, Clone)]
pub struct ViewTimeout {
    base_ms: u64,
    max_ms: u64,
    /// The first timeout is at least this many times the longest recent
    /// gap (0: always the base).
    factor: u64,
    /// How long an idle leader may wait before an empty block.
    idle_wait_ms: u64,
    /// The last gaps between progress events, newest last.
    gaps: VecDeque<u64>,
    /// The last progress event, and whether transactions were waiting then
    /// (`None` after a failed view).
    last: Option<(TimeMs, bool)>,
    /// Views in a row that failed (made no progress before their timer).
    failures_in_row: u32,
    /// The idle extension was taken since the last progress, failure or
    /// view start.
    extended: bool,
}

impl ViewTimeout {
    /// A view timer with the base, the cap and the factor; an idle leader
    /// waits `empty_block_delay_ms` before an empty block if that is longer
    /// than its batch delay (otherwise idle replicas need no extension).
    pub fn new(
        base_ms: u64,
        max_ms: u64,
        factor: u64,
        max_batch_delay_ms: u64,
        empty_block_delay_ms: u64,
    ) -> ViewTimeout {
        ViewTimeout {
            base_ms,
            max_ms: max_ms.max(base_ms),
            factor,
            idle_wait_ms: if empty_block_delay_ms > max_batch_delay_ms {
                empty_block_delay_ms
            } else {
                0
            },
            gaps: VecDeque::with_capacity(WINDOW),
            last: None,
            failures_in_row: 0,
            extended: false,
        }
    }

    /// The configured base: the first timeout while rounds are quick, and
    /// the period of re-sends.
    pub fn base_ms(&self) -> u64 {
        self.base_ms
    }

    /// The first timeout of a view: the base, or `factor` times the
    /// second-longest recent gap, capped at the maximum.
    pub fn first_ms(&self) -> u64 {
        // The second-longest: one outlier (a recovery that nothing marked,
        // a lossy moment) does not set the pace for WINDOW rounds.
        let (mut first, mut second) = (0, 0);
        for &gap in &self.gaps {
            if gap > first {
                second = first;
                first = gap;
            } else if gap > second {
                second = gap;
            }
        }
        let longest = second;
        self.base_ms
            .max(longest.saturating_mul(self.factor))
            .min(self.max_ms)
    }

    /// The timer of the current view: the first timeout doubled per failed
    /// view in a row, capped.
    pub fn current_ms(&self) -> u64 {
        let factor = 1u64 << self.failures_in_row.min(MAX_BACK_OFF_STEPS);
        self.first_ms().saturating_mul(factor).min(self.max_ms)
    }

    /// The committee made progress at `now` (a QC, an executed block);
    /// `busy`: transactions wait here now. Back-off resets.
    pub fn progress(&mut self, now: TimeMs, busy: bool) {
        if let Some((at, true)) = self.last {
            if self.gaps.len() == WINDOW {
                self.gaps.pop_front();
            }
            self.gaps.push_back(now.saturating_sub(at));
        }
        self.last = Some((now, busy));
        self.failures_in_row = 0;
        self.extended = false;
    }

    /// A view ended without progress: back-off grows, and the gap it
    /// interrupted is not counted.
    pub fn failed(&mut self) {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        self.last = None;
        self.extended = false;
    }

    /// Something went wrong that the protocol recovered from without a
    /// failed view (a vote re-sent because its QC did not come): the gap
    /// it is in does not count.
    pub fn interrupt(&mut self) {
        self.last = None;
    }

    /// A view began: after a failed one (a TC, a new view), the next gap
    /// counts from `now`.
    pub fn resume(&mut self, now: TimeMs, busy: bool) {
        if self.last.is_none() {
            self.last = Some((now, busy));
        }
        self.extended = false;
    }

    /// Views in a row that failed.
    pub fn failures_in_row(&self) -> u32 {
        self.failures_in_row
    }

    /// How much longer to wait when a view's first timer fires on a
    /// replica with no transaction waiting: the leader may be waiting out
    /// its empty-block delay. Once per view start or progress; `None` if
    /// it was taken already or there is no such delay.
    pub fn idle_extension(&mut self) -> Option<u64> {
        if self.extended || self.idle_wait_ms == 0 {
            return None;
        }
        self.extended = true;
        Some(self.idle_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_rounds_keep_the_base() {
        let mut t = ViewTimeout::new(500, 30_000, 4, 0, 0);
        for i in 0..100 {
            t.progress(i * 10, true);
        }
        assert_eq!(t.first_ms(), 500);
        assert_eq!(t.current_ms(), 500);
    }

    #[test]
    fn slow_rounds_lengthen_the_first_timeout_and_quick_ones_shorten_it_again() {
        let mut t = ViewTimeout::new(500, 30_000, 4, 0, 0);
        let mut now = 0;
        for _ in 0..5 {
            now += 300;
            t.progress(now, true);
        }
        assert_eq!(t.first_ms(), 1_200);
        for _ in 0..WINDOW - 2 {
            now += 10;
            t.progress(now, true);
        }
        // Two slow gaps are still in the window.
        assert_eq!(t.first_ms(), 1_200);
        now += 10;
        t.progress(now, true);
        // One is left: an outlier alone does not count.
        assert_eq!(t.first_ms(), 500);
        now += 2_000;
        t.progress(now, true);
        assert_eq!(t.first_ms(), 500, "one outlier set the pace");
        now += 300;
        t.progress(now, true);
        assert_eq!(t.first_ms(), 1_200);
    }

    #[test]
    fn gaps_that_begin_idle_or_span_a_failure_do_not_count() {
        let mut t = ViewTimeout::new(500, 30_000, 4, 0, 1_000);
        t.progress(0, false);
        t.progress(1_000, true);
        assert_eq!(t.first_ms(), 500, "the idle gap counted");
        t.failed();
        assert_eq!(t.current_ms(), 1_000);
        t.resume(3_000, true);
        t.progress(3_010, true);
        assert_eq!(t.first_ms(), 500, "the gap across the failure counted");
        t.interrupt();
        t.resume(3_500, true);
        t.progress(3_510, true);
        assert_eq!(t.first_ms(), 500, "the interrupted gap counted");
        assert_eq!(t.current_ms(), 500, "back-off did not reset");
        assert_eq!(t.idle_extension(), Some(1_000));
        assert_eq!(t.idle_extension(), None, "extended twice");
        t.progress(3_020, false);
        assert_eq!(t.idle_extension(), Some(1_000), "progress did not renew it");
    }

    #[test]
    fn back_off_doubles_and_everything_is_capped() {
        let mut t = ViewTimeout::new(500, 3_000, 4, 0, 0);
        for now in [0, 2_000, 4_000] {
            t.progress(now, true);
        }
        assert_eq!(t.first_ms(), 3_000);
        let mut t = ViewTimeout::new(500, 3_000, 0, 0, 0);
        for now in [0, 2_000, 4_000] {
            t.progress(now, true);
        }
        assert_eq!(t.first_ms(), 500, "factor 0 is a fixed base");
        for _ in 0..100 {
            t.failed();
        }
        assert_eq!(t.current_ms(), 3_000);
    }
}
