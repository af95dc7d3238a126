//! Refusals said at a bounded rate: a flood of refused connections is one log line per source
//! per interval with a count ([`SourceLog`]) and one console line per interval at most
//! ([`RefusalSummary`]), never a line each.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sources remembered at once; refusals from more are still counted in the totals, not logged
/// per source (a flood from many addresses must not grow memory).
const MAX_SOURCES: usize = 4096;

/// Why a connection from outside was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusalKind {
    /// The group-key handshake failed: another key, or none.
    WrongKey,
    /// The port holds as many connections as it takes ([`crate::shedding::ConnLimits`]).
    TooMany,
    /// A stranger's connection carried nothing for the idle timeout and was closed.
    Idle,
    /// The handshake broke off or took too long (garbage, a closed stream, silence).
    Handshake,
}

impl RefusalKind {
    const ALL: [RefusalKind; 3] = [
        RefusalKind::WrongKey,
        RefusalKind::TooMany,
        RefusalKind::Idle,
    ];

    fn label(self) -> &'static str {
        match self {
            RefusalKind::WrongKey => "wrong group key",
            RefusalKind::TooMany => "too many",
            RefusalKind::Idle => "idle",
            RefusalKind::Handshake => "failed handshake",
        }
    }
}

/// Refusals counted by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts([u64; 4]);

impl KindCounts {
    fn add(&mut self, kind: RefusalKind, n: u64) {
        self.0[kind as usize] += n;
    }

    /// The count of one kind.
    pub fn get(&self, kind: RefusalKind) -> u64 {
        self.0[kind as usize]
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for KindCounts {
    /// `wrong group key: 4,100; too many: 113` (kinds with none left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in RefusalKind::ALL {
            let n = self.get(kind);
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", kind.label(), thousands(n))?;
        }
        Ok(())
    }
}

/// `4213` as `4,213`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn connections(n: u64) -> &'static str {
    if n == 1 { "connection" } else { "connections" }
}

/// One source's refusals since its last line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReport<K> {
    /// The source (an address).
    pub source: K,
    /// Its refusals since the last line, this one included.
    pub counts: KindCounts,
    /// Seconds the counts cover (0 for a first refusal said at once).
    pub seconds: u64,
}

impl<K: fmt::Display> fmt::Display for SourceReport<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.counts.total();
        write!(
            f,
            "refused {} {} from {}",
            thousands(n),
            connections(n),
            self.source
        )?;
        if self.seconds > 0 {
            write!(f, " in the last {} s", self.seconds)?;
        }
        write!(f, " ({})", self.counts)
    }
}

#[derive(Debug)]
struct Tally {
    counts: KindCounts,
    said_at: u64,
}

/// Log lines of refusals per source: a source's first refusal is said at once, the next ones
/// once per interval with their count.
#[derive(Debug)]
pub struct SourceLog<K> {
    interval_ns: u64,
    sources: BTreeMap<K, Tally>,
}

impl<K: Ord + Clone> SourceLog<K> {
    /// A log saying each source at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        SourceLog {
            interval_ns: interval.as_nanos() as u64,
            sources: BTreeMap::new(),
        }
    }

    /// A refusal of `kind` from `source` at `now` (ns): the line to log, if one is due.
    pub fn note(&mut self, now: u64, source: &K, kind: RefusalKind) -> Option<SourceReport<K>> {
        if let Some(t) = self.sources.get_mut(source) {
            t.counts.add(kind, 1);
            if now.saturating_sub(t.said_at) < self.interval_ns {
                return None;
            }
            return Some(self.report(now, source));
        }
        if self.sources.len() >= MAX_SOURCES {
            self.forget_quiet(now);
            if self.sources.len() >= MAX_SOURCES {
                return None;
            }
        }
        let mut counts = KindCounts::default();
        counts.add(kind, 1);
        self.sources.insert(
            source.clone(),
            Tally {
                counts: KindCounts::default(),
                said_at: now,
            },
        );
        Some(SourceReport {
            source: source.clone(),
            counts,
            seconds: 0,
        })
    }

    /// The lines due at `now` for sources that went quiet with refusals unsaid; sources quiet
    /// for a whole interval with nothing unsaid are forgotten.
    pub fn flush(&mut self, now: u64) -> Vec<SourceReport<K>> {
        let due: Vec<K> = self
            .sources
            .iter()
            .filter(|(_, t)| {
                t.counts.total() > 0 && now.saturating_sub(t.said_at) >= self.interval_ns
            })
            .map(|(k, _)| k.clone())
            .collect();
        let lines = due.iter().map(|k| self.report(now, k)).collect();
        self.forget_quiet(now);
        lines
    }

    fn forget_quiet(&mut self, now: u64) {
        let interval = self.interval_ns;
        self.sources
            .retain(|_, t| t.counts.total() > 0 || now.saturating_sub(t.said_at) < interval);
    }

    fn report(&mut self, now: u64, source: &K) -> SourceReport<K> {
        let t = self.sources.get_mut(source).expect("a known source");
        let seconds = now.saturating_sub(t.said_at).div_ceil(1_000_000_000);
        let counts = std::mem::take(&mut t.counts);
        t.said_at = now;
        SourceReport {
            source: source.clone(),
            counts,
            seconds,
        }
    }
}

/// Refusals from every source over a stretch of time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Refusals by kind.
    pub counts: KindCounts,
    /// Distinct sources.
    pub addresses: usize,
    /// Seconds covered.
    pub seconds: u64,
}

impl fmt::Display for Summary {
    /// `refused 4,213 connections from 3 addresses in the last 60 s (wrong group key: 4,100;
    /// too many: 113)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.counts.total();
        write!(
            f,
            "refused {} {} from {} {} in the last {} s ({})",
            thousands(n),
            connections(n),
            thousands(self.addresses as u64),
            if self.addresses == 1 {
                "address"
            } else {
                "addresses"
            },
            self.seconds,
            self.counts
        )
    }
}

/// What a console says of refusals: the first few after a quiet interval in full (the caller
/// prints each with its reason), the rest in one [`Summary`] per interval at most.
#[derive(Debug)]
pub struct RefusalSummary<K> {
    interval_ns: u64,
    /// Refusals said in full in each window.
    burst: u32,
    /// When the current window began (at a refusal after a quiet interval, or at a summary).
    window_start: Option<u64>,
    /// Refusals said in full in the current window.
    said: u32,
    counts: KindCounts,
    addresses: BTreeSet<K>,
}

impl<K: Ord> RefusalSummary<K> {
    /// A console that says `burst` refusals in full after a quiet `interval`, then one summary
    /// per `interval` at most while they go on.
    pub fn new(interval: Duration, burst: u32) -> Self {
        RefusalSummary {
            interval_ns: interval.as_nanos() as u64,
            burst,
            window_start: None,
            said: 0,
            counts: KindCounts::default(),
            addresses: BTreeSet::new(),
        }
    }

    /// A refusal of `kind` from `source` at `now` (ns): `true` when it is to be said at once,
    /// else it waits for the next [`Self::take`].
    pub fn note(&mut self, now: u64, source: K, kind: RefusalKind) -> bool {
        let quiet = self
            .window_start
            .is_none_or(|t| now.saturating_sub(t) >= self.interval_ns);
        if quiet && self.counts.total() == 0 {
            self.window_start = Some(now);
            self.said = 0;
        }
        if self.said < self.burst {
            self.said += 1;
            return true;
        }
        self.counts.add(kind, 1);
        if self.addresses.len() < MAX_SOURCES {
            self.addresses.insert(source);
        }
        false
    }

    /// The summary due at `now`: refusals counted and a whole interval since the window began.
    /// Refusals that go on after it are summarised again an interval later, none said in full.
    pub fn take(&mut self, now: u64) -> Option<Summary> {
        let elapsed = now.saturating_sub(self.window_start?);
        if self.counts.total() == 0 || elapsed < self.interval_ns {
            return None;
        }
        self.window_start = Some(now);
        self.said = self.burst;
        Some(Summary {
            counts: std::mem::take(&mut self.counts),
            addresses: std::mem::take(&mut self.addresses).len(),
            seconds: elapsed.div_ceil(1_000_000_000),
        })
    }
}

/// How often one source's refusals are logged at most.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The refusals of one port, logged at a bounded rate.
#[derive(Debug)]
pub struct PortLog {
    /// The port as log lines name it ("peer port", "music server port").
    name: &'static str,
    start: Instant,
    log: Mutex<SourceLog<IpAddr>>,
}

impl PortLog {
    /// An empty log of the port called `name`.
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(PortLog {
            name,
            start: Instant::now(),
            log: Mutex::new(SourceLog::new(REFUSAL_LOG_INTERVAL)),
        })
    }

    /// The port's name in log lines.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// A connection from `ip` refused (or closed) for `kind`: logged if a line is due.
    pub fn note(&self, ip: IpAddr, kind: RefusalKind) {
        let report = self
            .log
            .lock()
            .expect("refusal log")
            .note(self.now(), &ip, kind);
        if let Some(r) = report {
            tracing::warn!(port = self.name, "{r}");
        }
    }

    /// Logs what went unsaid of sources that went quiet.
    pub fn flush(&self) {
        let reports = self.log.lock().expect("refusal log").flush(self.now());
        for r in reports {
            tracing::warn!(port = self.name, "{r}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_source_flooding_is_one_line_at_once_then_one_line_per_interval_with_its_count() {
        let mut log = SourceLog::new(Duration::from_secs(10));
        let ip = "10.0.0.9".to_string();
        let first = log.note(0, &ip, RefusalKind::WrongKey).unwrap();
        assert_eq!(
            first.to_string(),
            "refused 1 connection from 10.0.0.9 (wrong group key: 1)"
        );
        let mut lines = 0;
        // 100 refusals a second for 25 s: two more lines, not 2,500.
        for i in 1..2_500u64 {
            let kind = if i % 10 == 0 {
                RefusalKind::TooMany
            } else {
                RefusalKind::WrongKey
            };
            if let Some(line) = log.note(i * SEC / 100, &ip, kind) {
                lines += 1;
                assert_eq!(line.seconds, 10);
                assert_eq!(line.counts.total(), 1_000, "{line}");
            }
        }
        assert_eq!(lines, 2);
        let tail = log.flush(35 * SEC);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].counts.total(), 2_499 - 2_000);
        assert!(log.flush(60 * SEC).is_empty());
    }

    #[test]
    fn the_console_says_the_first_refusals_then_one_summary_a_minute_naming_sources_and_kinds() {
        let mut console = RefusalSummary::new(Duration::from_secs(60), 2);
        assert!(console.note(0, "10.0.0.1", RefusalKind::WrongKey));
        assert!(console.note(SEC, "10.0.0.1", RefusalKind::WrongKey));
        for i in 2..4_214u64 {
            let (src, kind) = match i % 3 {
                0 => ("10.0.0.1", RefusalKind::WrongKey),
                1 => ("10.0.0.2", RefusalKind::WrongKey),
                _ => ("10.0.0.3", RefusalKind::TooMany),
            };
            assert!(!console.note(i * SEC / 100, src, kind));
            assert_eq!(console.take(i * SEC / 100), None);
        }
        let s = console.take(60 * SEC).unwrap();
        assert_eq!(
            s.to_string(),
            "refused 4,212 connections from 3 addresses in the last 60 s (wrong group key: \
             2,808; too many: 1,404)"
        );
        // Still flooding: the next minute is a summary again, nothing said in full.
        assert!(!console.note(70 * SEC, "10.0.0.1", RefusalKind::WrongKey));
        assert_eq!(console.take(100 * SEC), None);
        assert_eq!(console.take(120 * SEC).unwrap().counts.total(), 1);
        assert_eq!(console.take(300 * SEC), None);
        // Quiet for a whole interval: the next ones are said at once again.
        assert!(console.note(300 * SEC, "10.0.0.4", RefusalKind::TooMany));
    }

    #[test]
    fn thousands_are_grouped_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(4_213_000), "4,213,000");
    }
}
