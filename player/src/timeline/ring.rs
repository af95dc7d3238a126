//! The last few values pushed, in storage reserved when the timeline is made: the audio
//! callback must not allocate.

/// The last `capacity` values pushed.
#[derive(Debug, Clone)]
pub(super) struct Ring<T> {
    items: Vec<T>,
    len: usize,
    next: usize,
    /// Room for a sorted copy (medians, trimmed means).
    scratch: Vec<T>,
}

impl<T: Copy> Ring<T> {
    /// An empty ring of `capacity` values (at least one), its storage filled with `fill`.
    pub(super) fn new(capacity: usize, fill: T) -> Self {
        let capacity = capacity.max(1);
        Ring {
            items: vec![fill; capacity],
            len: 0,
            next: 0,
            scratch: vec![fill; capacity],
        }
    }

    pub(super) fn push(&mut self, value: T) {
        let n = self.items.len();
        self.items[self.next] = value;
        self.next = (self.next + 1) % n;
        self.len = (self.len + 1).min(n);
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Changes every value held.
    pub(super) fn update(&mut self, f: impl Fn(T) -> T) {
        for item in &mut self.items[..self.len] {
            *item = f(*item);
        }
    }

    /// The values held, in no particular order.
    pub(super) fn items(&self) -> &[T] {
        &self.items[..self.len]
    }

    /// The values held, newest first.
    pub(super) fn newest(&self) -> impl Iterator<Item = T> + '_ {
        let n = self.items.len();
        (1..=self.len).map(move |back| self.items[(self.next + n - back) % n])
    }
}

impl Ring<f64> {
    /// The newest `take` values but the newest `skip`, sorted, in the ring's scratch.
    pub(super) fn sorted(&mut self, skip: usize, take: usize) -> &[f64] {
        let mut n = 0;
        let n_items = self.items.len();
        for back in (1 + skip)..=(self.len.min(skip.saturating_add(take))) {
            self.scratch[n] = self.items[(self.next + n_items - back) % n_items];
            n += 1;
        }
        let kept = &mut self.scratch[..n];
        kept.sort_unstable_by(f64::total_cmp);
        kept
    }

    /// Median of the values held but the newest `skip`; `None` if that leaves none.
    pub(super) fn median_before(&mut self, skip: usize) -> Option<f64> {
        let kept = self.sorted(skip, usize::MAX);
        (!kept.is_empty()).then(|| median_of_sorted(kept))
    }
}

/// Median of a sorted, non-empty slice.
pub(super) fn median_of_sorted(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median of a small non-empty slice, reordering it.
pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    median_of_sorted(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_newest_values_and_their_median() {
        let mut ring = Ring::new(3, 0.0);
        for v in [5.0, 1.0, 4.0, 2.0] {
            ring.push(v);
        }
        assert_eq!(ring.newest().collect::<Vec<_>>(), vec![2.0, 4.0, 1.0]);
        assert_eq!(ring.median_before(0), Some(2.0));
        assert_eq!(ring.median_before(1), Some(2.5));
        assert_eq!(ring.median_before(3), None);
        assert_eq!(ring.sorted(0, 2), &[2.0, 4.0]);
        ring.clear();
        assert_eq!(ring.len(), 0);
    }
}
