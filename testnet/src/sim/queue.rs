//! The simulator's event queue: events come out in order of (virtual time,
//! the order they were scheduled in), as from a binary heap keyed by (time,
//! sequence number), but at a cost that does not grow with the queue.
//!
//! A calendar of [`WINDOW`] one-millisecond slots covers the times from the
//! clock's current millisecond on; each slot is a FIFO of the events due
//! then, so events due at one time leave in the order they were scheduled.
//! Events due later than the calendar reaches (timers, crashes, the next
//! mined block) wait in a heap keyed by (time, sequence number) and move
//! into their slot when the calendar reaches their millisecond: before
//! anything else can be scheduled there, since an event is only scheduled
//! straight into a slot the calendar already covers. So every slot holds
//! its events in scheduling order and the queue pops exactly what the heap
//! alone would, in the same order.
//!
//! Most events are message deliveries a few to a few hundred milliseconds
//! ahead; pushing and popping them is a ring index and a `VecDeque`
//! operation instead of a heap's sift (about 5 % of a simulated run).

use super::scenario::TimeMs;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Milliseconds the calendar covers.
const WINDOW: u64 = 1_024;

/// Events in order of (time, scheduling order); see the module docs.
#[derive(Debug)]
pub struct EventQueue<E> {
    /// Slot `t % WINDOW` holds the events due at `t`, for `now <= t <
    /// now + WINDOW`.
    slots: Vec<VecDeque<E>>,
    /// The earliest time any queued event may be due.
    now: TimeMs,
    /// Events in `slots`.
    in_calendar: usize,
    /// Events due at `now + WINDOW` or later.
    later: BinaryHeap<Later<E>>,
    /// Scheduling order of the events in `later`.
    seq: u64,
}

#[derive(Debug)]
struct Later<E> {
    at: TimeMs,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Later<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Later<E> {}

impl<E> PartialOrd for Later<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Later<E> {
    /// Reversed, so the max-heap pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            slots: (0..WINDOW).map(|_| VecDeque::new()).collect(),
            now: 0,
            in_calendar: 0,
            later: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    fn slot(&mut self, at: TimeMs) -> Option<&mut VecDeque<E>> {
        self.slots.get_mut((at % WINDOW) as usize)
    }

    /// Schedules `event` at `at` (an event in the past is due now: the
    /// clock never goes back).
    pub fn push(&mut self, at: TimeMs, event: E) {
        let at = at.max(self.now);
        if at - self.now < WINDOW {
            if let Some(slot) = self.slot(at) {
                slot.push_back(event);
                self.in_calendar += 1;
            }
        } else {
            self.seq += 1;
            let seq = self.seq;
            self.later.push(Later { at, seq, event });
        }
    }

    /// The earliest event, with its time; `None` once the queue is empty.
    pub fn pop(&mut self) -> Option<(TimeMs, E)> {
        loop {
            if self.in_calendar == 0 {
                // Nothing in the calendar: jump to the next later event.
                self.now = self.later.peek()?.at;
                self.fill();
            }
            let now = self.now;
            if let Some(event) = self.slot(now).and_then(VecDeque::pop_front) {
                self.in_calendar -= 1;
                return Some((now, event));
            }
            self.now += 1;
            self.fill();
        }
    }

    /// Moves the later events the calendar now reaches into their slots.
    fn fill(&mut self) {
        let reach = self.now.saturating_add(WINDOW);
        while self.later.peek().is_some_and(|l| l.at < reach) {
            if let Some(Later { at, event, .. }) = self.later.pop()
                && let Some(slot) = self.slot(at)
            {
                slot.push_back(event);
                self.in_calendar += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sim::rng::Rng;

    type Heap = BinaryHeap<Later<u64>>;

    /// Schedules one event in both: mostly near, some far, some now, now
    /// and then one due before `now`.
    fn schedule(
        rng: &mut Rng,
        seq: &mut u64,
        now: u64,
        queue: &mut EventQueue<u64>,
        heap: &mut Heap,
    ) {
        let delay = match rng.range_inclusive(0, 9) {
            0 => rng.range_inclusive(0, 20_000),
            1 => 0,
            _ => rng.range_inclusive(0, 2_000),
        };
        let at = if rng.chance(0.05) {
            now / 2
        } else {
            now + delay
        };
        *seq += 1;
        queue.push(at, *seq);
        heap.push(Later {
            at: at.max(now),
            seq: *seq,
            event: *seq,
        });
    }

    /// The queue pops exactly what a heap keyed by (time, sequence number)
    /// pops, for random schedules mixing near and far events, pushes while
    /// popping, and events in the past.
    #[test]
    fn it_pops_what_a_heap_by_time_then_sequence_pops() {
        let seed = std::env::var("PHALANX_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7);
        println!("seed {seed} (replay with PHALANX_SEED={seed})");
        let mut rng = Rng::stream(seed, "queue test");
        for _ in 0..50 {
            let mut queue = EventQueue::default();
            let mut heap = Heap::new();
            let (mut now, mut seq, mut popped) = (0u64, 0u64, 0);
            for _ in 0..200 {
                schedule(&mut rng, &mut seq, now, &mut queue, &mut heap);
            }
            while let Some(expected) = heap.pop() {
                let (at, event) = queue.pop().unwrap();
                assert_eq!((at, event), (expected.at, expected.event));
                assert!(at >= now);
                now = at;
                popped += 1;
                if popped < 2_000 {
                    for _ in 0..rng.range_inclusive(0, 2) {
                        schedule(&mut rng, &mut seq, now, &mut queue, &mut heap);
                    }
                }
            }
            assert!(queue.pop().is_none());
        }
    }
}
