//! The network impairment of one direction of one link, as a sans-IO component: given the
//! instant a packet is sent, it decides when (and how many times) it arrives. It reads no clock
//! and owns its seeded random generator, so the simulator and a real UDP/TCP relay can share it.
//!
//! Delay is a base plus an exponentially distributed jitter (most packets near the base, a tail
//! of late ones, as on real LANs and Wi-Fi), capped; loss is independent, bursty
//! (Gilbert–Elliott), or both; packets may be duplicated, held back to reorder them, serialised
//! at a bandwidth, and the direction may be blocked (a partition) until it is healed.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Two-state bursty loss: the channel moves between a good and a bad state before each
/// packet, and loses packets with a different probability in each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from good to bad before a packet.
    pub p_good_to_bad: f64,
    /// Probability of moving from bad to good before a packet.
    pub p_bad_to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// The simple Gilbert model (no loss when good, all lost when bad) with the given long-run
    /// loss rate and mean burst length in packets.
    pub fn with_mean_loss(mean_loss: f64, mean_burst: f64) -> Self {
        let r = 1.0 / mean_burst.max(1.0);
        let mean = mean_loss.clamp(0.0, 0.99);
        GilbertElliott {
            p_good_to_bad: mean * r / (1.0 - mean),
            p_bad_to_good: r,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// Long-run fraction of packets lost.
    pub fn mean_loss(&self) -> f64 {
        let pi_bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good);
        pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good
    }
}

/// Impairments of one direction of a link. Times are nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Smallest one-way delay (propagation and processing).
    pub base_delay: u64,
    /// Mean of the exponential jitter added to the base.
    pub jitter_mean: u64,
    /// Largest one-way delay: jitter is capped so that base + jitter stays at or below it.
    pub max_delay: u64,
    /// Independent loss probability per packet.
    pub loss: f64,
    /// Bursty loss on top of the independent loss.
    pub burst: Option<GilbertElliott>,
    /// Probability that a delivered packet arrives twice (datagrams only).
    pub duplicate: f64,
    /// Probability that a packet is held back by `reorder_delay`, so later ones overtake it.
    pub reorder: f64,
    /// Extra delay of a held-back packet.
    pub reorder_delay: u64,
    /// Serialisation rate in bits per second (`None`: unlimited).
    pub bandwidth_bps: Option<u64>,
    /// First retransmission timeout of a reliable stream (doubles on every further loss).
    pub rto: u64,
}

impl LinkConfig {
    /// A perfect link with a fixed delay.
    pub fn fixed(delay: u64) -> Self {
        LinkConfig {
            base_delay: delay,
            jitter_mean: 0,
            max_delay: delay,
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: 0,
            bandwidth_bps: None,
            rto: (4 * delay).max(1_000_000),
        }
    }

    /// Long-run fraction of packets lost (independent and bursty combined).
    pub fn mean_loss(&self) -> f64 {
        let b = self.burst.map_or(0.0, |g| g.mean_loss());
        1.0 - (1.0 - self.loss) * (1.0 - b)
    }
}

/// Most retransmissions of one packet on a reliable stream before it goes through anyway
/// (a real stream would reset the connection; the node's liveness check covers that case).
const MAX_RETRANSMISSIONS: u32 = 12;
/// Largest retransmission timeout, nanoseconds.
const MAX_RTO: u64 = 1_000_000_000;

/// One direction of an impaired link. See the module documentation.
#[derive(Clone, Debug)]
pub struct LinkModel {
    config: LinkConfig,
    rng: ChaCha8Rng,
    bad_state: bool,
    blocked: bool,
    busy_until: u64,
    last_stream_delivery: u64,
}

impl LinkModel {
    /// A link direction with its own random stream, seeded by `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        LinkModel {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            bad_state: false,
            blocked: false,
            busy_until: 0,
            last_stream_delivery: 0,
        }
    }

    /// The impairments in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Blocks (partition) or unblocks (heal) the direction. While blocked every packet is lost.
    pub fn set_blocked(&mut self, blocked: bool) {
        self.blocked = blocked;
    }

    /// Whether the direction is blocked.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    fn uniform(&mut self) -> f64 {
        // 53 random bits in [0, 1).
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Draws a one-way delay: the base plus capped exponential jitter.
    pub fn sample_delay(&mut self) -> u64 {
        let c = self.config;
        let room = c.max_delay.saturating_sub(c.base_delay);
        let jitter = if c.jitter_mean == 0 || room == 0 {
            0
        } else {
            let u = 1.0 - self.uniform(); // (0, 1]
            ((-u.ln()) * c.jitter_mean as f64).min(room as f64) as u64
        };
        c.base_delay + jitter
    }

    /// Whether the next packet is lost (advances the bursty channel by one packet).
    /// Loss of a retransmission: the long-run loss of the channel, drawn independently.
    fn retransmission_lost(&mut self) -> bool {
        if self.blocked {
            return true;
        }
        let burst = self.config.burst.map_or(0.0, |g| g.mean_loss());
        let p = 1.0 - (1.0 - burst) * (1.0 - self.config.loss.max(0.0));
        self.uniform() < p
    }

    fn lost(&mut self) -> bool {
        if self.blocked {
            return true;
        }
        let mut lost = false;
        if let Some(g) = self.config.burst {
            let flip = self.uniform();
            self.bad_state = if self.bad_state {
                flip >= g.p_bad_to_good
            } else {
                flip < g.p_good_to_bad
            };
            let p = if self.bad_state {
                g.loss_bad
            } else {
                g.loss_good
            };
            lost = self.uniform() < p;
        }
        let independent = self.config.loss > 0.0 && self.uniform() < self.config.loss;
        lost || independent
    }

    /// Instant the packet has left the sender once serialised at the link's bandwidth.
    fn departure(&mut self, now: u64, len: usize) -> u64 {
        match self.config.bandwidth_bps {
            Some(bps) if bps > 0 => {
                let ser = (len as u128 * 8 * 1_000_000_000 / bps as u128) as u64;
                let start = now.max(self.busy_until);
                self.busy_until = start + ser;
                self.busy_until
            }
            _ => now,
        }
    }

    fn one_delivery(&mut self, departure: u64) -> u64 {
        let mut t = departure + self.sample_delay();
        if self.config.reorder > 0.0 && self.uniform() < self.config.reorder {
            t += self.config.reorder_delay;
        }
        t
    }

    /// Datagram semantics: the arrival instants of a packet of `len` bytes sent at `now`
    /// (empty: lost; two: duplicated). Arrivals are unordered with respect to other packets.
    pub fn decide(&mut self, now: u64, len: usize) -> Vec<u64> {
        if self.lost() {
            return Vec::new();
        }
        let dep = self.departure(now, len);
        let mut out = vec![self.one_delivery(dep)];
        if self.config.duplicate > 0.0 && self.uniform() < self.config.duplicate {
            out.push(self.one_delivery(dep));
        }
        out
    }

    /// When the last message sent on the stream is delivered (0: none yet): a close sent after
    /// it arrives no earlier.
    pub fn last_stream_delivery(&self) -> u64 {
        self.last_stream_delivery
    }

    /// Reliable ordered stream semantics (TCP, a QUIC stream): a lost packet is retransmitted
    /// after the retransmission timeout (doubling), never duplicated, and delivered no earlier
    /// than the packets sent before it on the stream (head-of-line blocking). `None` while the
    /// direction is blocked: the stream stalls and the node's liveness check closes it.
    pub fn decide_reliable(&mut self, now: u64, len: usize) -> Option<u64> {
        if self.blocked {
            return None;
        }
        let mut sent = self.departure(now, len);
        let mut rto = self.config.rto.max(1);
        // The first transmission meets the channel as it is now; a retransmission leaves an RTO
        // later, after other packets have moved the loss chain on, so it meets the channel's
        // long-run loss instead (drawing it from the same burst again made one message wait
        // minutes behind a doubling timer, and stalled the stream behind it). The timer's
        // doubling is capped, as real stacks bound their backoff.
        let mut lost = self.lost();
        for _ in 0..MAX_RETRANSMISSIONS {
            if !lost {
                break;
            }
            sent += rto;
            rto = rto.saturating_mul(2).min(MAX_RTO.max(self.config.rto));
            lost = self.retransmission_lost();
        }
        let t = (sent + self.sample_delay()).max(self.last_stream_delivery);
        self.last_stream_delivery = t;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(loss: f64, burst: Option<GilbertElliott>) -> LinkConfig {
        LinkConfig {
            loss,
            burst,
            ..LinkConfig::fixed(1_000_000)
        }
    }

    #[test]
    fn same_seed_gives_the_same_decisions() {
        let cfg = LinkConfig {
            jitter_mean: 300_000,
            max_delay: 5_000_000,
            duplicate: 0.05,
            ..lossy(0.1, Some(GilbertElliott::with_mean_loss(0.05, 4.0)))
        };
        let run = |seed| {
            let mut m = LinkModel::new(cfg, seed);
            (0..1_000u64)
                .map(|i| m.decide(i * 1_000_000, 100))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn independent_loss_matches_its_rate() {
        let mut m = LinkModel::new(lossy(0.1, None), 1);
        let n = 100_000;
        let lost = (0..n).filter(|i| m.decide(*i, 100).is_empty()).count();
        let rate = lost as f64 / n as f64;
        assert!((rate - 0.1).abs() < 0.005, "loss rate {rate}");
    }

    #[test]
    fn bursty_loss_has_its_mean_and_comes_in_runs() {
        let ge = GilbertElliott::with_mean_loss(0.05, 4.0);
        assert!((ge.mean_loss() - 0.05).abs() < 1e-12);
        let mut m = LinkModel::new(lossy(0.0, Some(ge)), 2);
        let n = 200_000;
        let lost: Vec<bool> = (0..n).map(|i| m.decide(i, 100).is_empty()).collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / n as f64;
        assert!((rate - 0.05).abs() < 0.006, "loss rate {rate}");
        let runs = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        let mean_run = lost.iter().filter(|l| **l).count() as f64 / runs as f64;
        assert!((3.0..5.0).contains(&mean_run), "mean burst {mean_run}");
    }

    #[test]
    fn delays_stay_between_base_and_cap_and_cluster_near_the_base() {
        let cfg = LinkConfig {
            jitter_mean: 1_000_000,
            max_delay: 10_000_000,
            ..LinkConfig::fixed(2_000_000)
        };
        let mut m = LinkModel::new(cfg, 3);
        let d: Vec<u64> = (0..10_000).map(|_| m.sample_delay()).collect();
        assert!(d.iter().all(|x| (2_000_000..=10_000_000).contains(x)));
        let near = d.iter().filter(|x| **x < 2_100_000).count();
        // P(exp(1 ms) < 0.1 ms) = 9.5 %.
        assert!((800..1_100).contains(&near), "{near} near the base");
    }

    #[test]
    fn reliable_stream_retransmits_in_order_and_stalls_when_blocked() {
        let cfg = LinkConfig {
            jitter_mean: 500_000,
            max_delay: 20_000_000,
            rto: 10_000_000,
            ..lossy(0.3, None)
        };
        let mut m = LinkModel::new(cfg, 4);
        let mut last = 0;
        let mut late = 0;
        for i in 0..1_000u64 {
            let t = m.decide_reliable(i * 100_000, 100).expect("not blocked");
            assert!(t >= last, "out of order");
            if t >= i * 100_000 + 11_000_000 {
                late += 1;
            }
            last = t;
        }
        assert!(
            late > 100,
            "losses show up as retransmission delay ({late})"
        );
        m.set_blocked(true);
        assert_eq!(m.decide_reliable(200_000_000, 100), None);
        assert!(m.decide(200_000_000, 100).is_empty());
        m.set_blocked(false);
        assert!(m.decide_reliable(300_000_000, 100).is_some());
    }

    #[test]
    fn duplicates_and_bandwidth_shape_datagrams() {
        let cfg = LinkConfig {
            duplicate: 1.0,
            bandwidth_bps: Some(8_000_000), // 1 byte per microsecond
            ..LinkConfig::fixed(1_000_000)
        };
        let mut m = LinkModel::new(cfg, 5);
        let a = m.decide(0, 1_000);
        assert_eq!(a, vec![2_000_000, 2_000_000]);
        // Sent at the same instant, the second packet waits for the first to be serialised.
        let b = m.decide(0, 1_000);
        assert_eq!(b[0], 3_000_000);
    }
}
