//! Redials: the listen addresses of members whose link dropped (timeout, reset, partition, a
//! peer stopped or restarted), dialled again with capped, jittered exponential backoff until a
//! link to the address is back and holds or the address is forgotten. A peer that left on
//! purpose, or refused the link, is not redialled; a link that drops again within
//! `Config::redial_max` of its handshake (a full peer whose refusal came as a bare close) counts
//! as one more failed dial, so its backoff grows instead of starting over.

use std::collections::BTreeMap;

use super::api::TimeoutReason;
use super::config::Config;
use crate::time::{LocalTime, Nanos};

/// One lost member's address.
#[derive(Clone, Copy, Debug)]
struct Lost {
    /// When its link dropped: forgotten `Config::forget_lost_after` later.
    since: LocalTime,
    /// Dials made since, each one answered by a failure or not answered at all.
    attempts: u32,
    /// When the next dial is due.
    next_at: LocalTime,
    /// When a link to it completed its handshake, if one did: the entry is kept for
    /// `Config::redial_max` in case the link drops again at once, and dials nothing meanwhile.
    linked_at: Option<LocalTime>,
}

/// The lost members' addresses, ordered by address.
#[derive(Debug, Default)]
pub(crate) struct Redials {
    lost: BTreeMap<String, Lost>,
}

/// The wait before dial number `attempts + 1`: `redial_min` doubled per attempt, capped at
/// `redial_max`, spread by `redial_jitter` around it (`r` uniform in [0, 1)).
pub(crate) fn backoff(attempts: u32, r: f64, config: &Config) -> Nanos {
    let base = config
        .redial_min
        .saturating_mul(1 << attempts.min(20))
        .min(config.redial_max);
    (base as f64 * (1.0 + config.redial_jitter * (r - 0.5))) as Nanos
}

impl Redials {
    /// The link to the member listening at `addr` dropped at `now`: dial it again after the
    /// first backoff. An address already remembered keeps its backoff. At most
    /// `Config::max_redials` addresses are remembered; beyond, the oldest loss is forgotten.
    pub(crate) fn lost(&mut self, addr: &str, now: LocalTime, r: f64, config: &Config) {
        if let Some(l) = self.lost.get_mut(addr) {
            match l.linked_at.take() {
                Some(at) if now.since(at) < config.redial_max => {
                    l.attempts = l.attempts.saturating_add(1);
                    l.next_at = now + backoff(l.attempts, r, config);
                }
                Some(_) => {
                    *l = Lost {
                        since: now,
                        attempts: 0,
                        next_at: now + backoff(0, r, config),
                        linked_at: None,
                    };
                }
                None => {}
            }
            return;
        }
        if config.max_redials == 0 {
            return;
        }
        while self.lost.len() >= config.max_redials {
            let oldest = self
                .lost
                .iter()
                .min_by_key(|(a, l)| (l.since, (*a).clone()))
                .map(|(a, _)| a.clone());
            if let Some(a) = oldest {
                self.lost.remove(&a);
            }
        }
        let next_at = now + backoff(0, r, config);
        self.lost.insert(
            addr.to_string(),
            Lost {
                since: now,
                attempts: 0,
                next_at,
                linked_at: None,
            },
        );
    }

    /// Whether `addr` is a lost member's, dialled again by this backoff.
    pub(crate) fn contains(&self, addr: &str) -> bool {
        self.lost.get(addr).is_some_and(|l| l.linked_at.is_none())
    }

    /// A link to `addr` completed its handshake at `now`: nothing to redial there, unless it
    /// drops again within `Config::redial_max`.
    pub(crate) fn linked(&mut self, addr: &str, now: LocalTime) {
        if let Some(l) = self.lost.get_mut(addr) {
            l.linked_at = Some(now);
        }
    }

    /// A dial to `addr` failed (refused, unreachable, handshake timed out): the next one waits
    /// for the backoff from now.
    pub(crate) fn failed(&mut self, addr: &str, now: LocalTime, r: f64, config: &Config) {
        if let Some(l) = self.lost.get_mut(addr).filter(|l| l.linked_at.is_none()) {
            l.next_at = l.next_at.max(now + backoff(l.attempts, r, config));
        }
    }

    /// Forgets addresses lost longer than `Config::forget_lost_after`, and returns those whose
    /// dial is due at `now`, in address order. The caller dials each or puts it off
    /// ([`Redials::dialled`] or [`Redials::put_off`]), so none stays due.
    pub(crate) fn due(&mut self, now: LocalTime, config: &Config) -> Vec<String> {
        self.lost.retain(|_, l| {
            now.since(l.since) < config.forget_lost_after
                && l.linked_at
                    .is_none_or(|at| now.since(at) < config.redial_max)
        });
        self.lost
            .iter()
            .filter(|(_, l)| l.linked_at.is_none() && l.next_at <= now)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// A dial to `addr` was asked for at `now`: the next one, if this one is never answered,
    /// waits for the next backoff.
    pub(crate) fn dialled(&mut self, addr: &str, now: LocalTime, r: f64, config: &Config) {
        if let Some(l) = self.lost.get_mut(addr) {
            l.attempts = l.attempts.saturating_add(1);
            l.next_at = now + backoff(l.attempts, r, config);
        }
    }

    /// The dial to `addr` cannot be made now (a dial is pending, the link cap is reached): try
    /// again after the largest backoff.
    pub(crate) fn put_off(&mut self, addr: &str, now: LocalTime, r: f64, config: &Config) {
        if let Some(l) = self.lost.get_mut(addr) {
            l.next_at = now + backoff(u32::MAX, r, config);
        }
    }

    /// The earliest dial due.
    pub(crate) fn poll_timeout(&self) -> Option<(LocalTime, TimeoutReason)> {
        self.lost
            .values()
            .filter(|l| l.linked_at.is_none())
            .map(|l| l.next_at)
            .min()
            .map(|at| (at, TimeoutReason::Redial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NodeId;
    use crate::time::{MILLISECOND, SECOND};

    #[test]
    fn a_link_that_drops_right_after_its_handshake_grows_the_backoff_instead_of_restarting_it() {
        let config = Config::new(NodeId(1));
        let mut r = Redials::default();
        let mut now = LocalTime(SECOND as u64);
        r.lost("h:1", now, 0.5, &config);
        let mut waits_ms = Vec::new();
        for _ in 0..5 {
            let (due_at, _) = r.poll_timeout().expect("a redial is due");
            waits_ms.push(due_at.since(now) / MILLISECOND);
            now = due_at;
            assert_eq!(r.due(now, &config), vec!["h:1".to_string()]);
            r.dialled("h:1", now, 0.5, &config);
            // The dial links (nothing is due while it holds)...
            r.linked("h:1", now);
            assert!(r.poll_timeout().is_none());
            // ...and the peer closes it at once, as a full peer does.
            now = now + MILLISECOND;
            r.lost("h:1", now, 0.5, &config);
        }
        assert_eq!(waits_ms, [500, 2_000, 4_000, 4_000, 4_000]);
        // A link that held past redial_max is forgotten: a later loss starts afresh.
        let (due_at, _) = r.poll_timeout().expect("due");
        r.due(due_at, &config);
        r.dialled("h:1", due_at, 0.5, &config);
        r.linked("h:1", due_at);
        let later = due_at + 5 * SECOND;
        assert!(r.due(later, &config).is_empty());
        r.lost("h:1", later, 0.5, &config);
        let (next, _) = r.poll_timeout().expect("due");
        assert_eq!(next.since(later) / MILLISECOND, 500);
    }
}
