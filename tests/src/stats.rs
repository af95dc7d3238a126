//! Distributions gathered during a run: a histogram of non-negative values with a fixed
//! resolution (exact maximum kept aside), and the quantile summary the report prints.

use serde::Serialize;

/// Median, 99th percentile and maximum of a distribution, with the number of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Number of samples.
    pub samples: u64,
}

/// Histogram of values in nanoseconds: 10 ns bins up to 1 ms, 1 µs bins up to 1 s, 1 ms bins
/// beyond (quantiles are reported at the upper edge of their bin, so never under-stated).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    bins: Vec<u64>,
    count: u64,
    max: u64,
}

const FINE_LIMIT: u64 = 1_000_000;
const FINE_BIN: u64 = 10;
const MID_LIMIT: u64 = 1_000_000_000;
const MID_BIN: u64 = 1_000;
const COARSE_BIN: u64 = 1_000_000;

fn bin_of(v: u64) -> usize {
    if v < FINE_LIMIT {
        (v / FINE_BIN) as usize
    } else if v < MID_LIMIT {
        (FINE_LIMIT / FINE_BIN + (v - FINE_LIMIT) / MID_BIN) as usize
    } else {
        let mid_bins = (MID_LIMIT - FINE_LIMIT) / MID_BIN;
        (FINE_LIMIT / FINE_BIN + mid_bins + ((v - MID_LIMIT) / COARSE_BIN).min(1_000_000)) as usize
    }
}

fn upper_edge(bin: usize) -> u64 {
    let b = bin as u64;
    let fine_bins = FINE_LIMIT / FINE_BIN;
    let mid_bins = (MID_LIMIT - FINE_LIMIT) / MID_BIN;
    if b < fine_bins {
        (b + 1) * FINE_BIN
    } else if b < fine_bins + mid_bins {
        FINE_LIMIT + (b - fine_bins + 1) * MID_BIN
    } else {
        MID_LIMIT + (b - fine_bins - mid_bins + 1) * COARSE_BIN
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value (ns).
    pub fn add(&mut self, v: u64) {
        let b = bin_of(v);
        if b >= self.bins.len() {
            self.bins.resize(b + 1, 0);
        }
        self.bins[b] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest value added (ns).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The smallest bin edge below which at least fraction `q` of the values lie (ns), capped
    /// at the exact maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let want = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= want {
                return upper_edge(i).min(self.max);
            }
        }
        self.max
    }

    /// The summary in units of `unit` nanoseconds (1 000 for microseconds).
    pub fn summary(&self, unit: f64) -> Quantiles {
        Quantiles {
            p50: self.quantile(0.5) as f64 / unit,
            p99: self.quantile(0.99) as f64 / unit,
            max: self.max as f64 / unit,
            samples: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_upper_bounds_within_one_bin() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.add(v * 7);
        }
        let p50 = h.quantile(0.5);
        assert!((35_000..=35_010).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((69_300..=69_310).contains(&p99), "{p99}");
        assert_eq!(h.max(), 70_000);
        h.add(5_000_000_000);
        assert_eq!(h.quantile(1.0), 5_000_000_000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }

    #[test]
    fn bins_cover_the_range_continuously() {
        for v in [
            0,
            9,
            10,
            999_999,
            1_000_000,
            1_000_999,
            999_999_999,
            1_000_000_000,
            7e11 as u64,
        ] {
            let b = bin_of(v);
            assert!(upper_edge(b) > v, "{v}");
            assert!(b == 0 || upper_edge(b - 1) <= v, "{v}");
        }
    }
}
