//! Load shedding at a listening port: how many connections strangers may hold, per remote
//! address and in all, which of them to shed when the port is full, how long an accept loop
//! waits after the system ran out of file descriptors, and the process's descriptor limit.
//!
//! A connection is a *stranger* from its accept until the transport calls
//! [`ConnGate::member`] (its link passed the group-key handshake, or came up on a client without
//! a key): members never count against the strangers' budget, so a flood cannot refuse them.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

/// The bounds of one listening port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections one remote IP address may hold before it is a member (count).
    pub per_ip: usize,
    /// Connections all strangers together may hold (count).
    pub total: usize,
    /// A stranger's connection that carries no byte either way this long is closed.
    pub idle_timeout: Duration,
}

impl ConnLimits {
    /// A client's peer port: 32 per address (peers on one host handshake at once), 256 in
    /// all, idle strangers closed after 10 s.
    pub const PEER_PORT: ConnLimits = ConnLimits {
        per_ip: 32,
        total: 256,
        idle_timeout: Duration::from_secs(10),
    };
    /// The music server's port: 256 per address (many clients on one host or behind one
    /// NAT), 1,024 in all, idle connections closed after 60 s (a client's channel reconnects
    /// on its next call).
    pub const SERVER_PORT: ConnLimits = ConnLimits {
        per_ip: 256,
        total: 1024,
        idle_timeout: Duration::from_secs(60),
    };
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShedReason {
    /// Its address holds [`ConnLimits::per_ip`] connections already.
    PerAddress,
    /// Strangers hold [`ConnLimits::total`] connections, none from a busier address to shed.
    Total,
}

impl std::fmt::Display for ShedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShedReason::PerAddress => "too many connections from one address",
            ShedReason::Total => "too many connections",
        })
    }
}

/// What a connection's I/O wrapper watches: whether the gate shed it, and whether it became a
/// member (no idle timeout then).
#[derive(Debug, Default)]
struct SlotState {
    shed: AtomicBool,
    member: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    state: Arc<SlotState>,
}

#[derive(Debug, Default)]
struct Gate {
    next_id: u64,
    /// Strangers' connections by remote address.
    strangers: BTreeMap<SocketAddr, Entry>,
    /// Strangers' connections per remote IP (never 0).
    per_ip: BTreeMap<IpAddr, usize>,
}

impl Gate {
    fn remove(&mut self, remote: SocketAddr, id: u64) -> Option<Entry> {
        if self.strangers.get(&remote).is_none_or(|e| e.id != id) {
            return None;
        }
        let entry = self.strangers.remove(&remote)?;
        if let Some(n) = self.per_ip.get_mut(&remote.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&remote.ip());
            }
        }
        Some(entry)
    }

    /// The oldest stranger of the address holding the most (the lowest address on a tie),
    /// if it holds more than `than`.
    fn busiest_oldest(&self, than: usize) -> Option<(SocketAddr, u64)> {
        let (&ip, &n) = self
            .per_ip
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        if n <= than {
            return None;
        }
        self.strangers
            .iter()
            .filter(|(a, _)| a.ip() == ip)
            .min_by_key(|(_, e)| e.id)
            .map(|(a, e)| (*a, e.id))
    }
}

/// The connection budget of one listening port. Cheap to clone; clones share the budget.
#[derive(Clone, Debug)]
pub struct ConnGate {
    limits: ConnLimits,
    inner: Arc<Mutex<Gate>>,
}

impl ConnGate {
    /// An empty gate with these limits.
    pub fn new(limits: ConnLimits) -> Self {
        ConnGate {
            limits,
            inner: Arc::default(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// A connection from `remote` was accepted: its slot (held as long as the connection is
    /// open), or why it is to be closed at once. When strangers hold the whole budget, the
    /// oldest connection of the address holding the most is shed for it, if that address
    /// holds more than the newcomer's would: a flood from a few addresses cannot keep a
    /// newcomer from elsewhere out.
    pub fn admit(&self, remote: SocketAddr) -> Result<ConnSlot, ShedReason> {
        let mut g = self.inner.lock().expect("gate lock");
        let own = g.per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if own >= self.limits.per_ip {
            return Err(ShedReason::PerAddress);
        }
        if g.strangers.len() >= self.limits.total {
            let (victim, id) = g.busiest_oldest(own + 1).ok_or(ShedReason::Total)?;
            if let Some(e) = g.remove(victim, id) {
                e.state.shed.store(true, Ordering::Release);
                if let Some(w) = e.state.waker.lock().expect("slot waker").take() {
                    w.wake();
                }
            }
        }
        g.next_id += 1;
        let id = g.next_id;
        let state = Arc::new(SlotState::default());
        if let Some(old) = g.strangers.insert(
            remote,
            Entry {
                id,
                state: state.clone(),
            },
        ) {
            // The same address and port again: the older connection is gone.
            old.state.shed.store(true, Ordering::Release);
        } else {
            *g.per_ip.entry(remote.ip()).or_default() += 1;
        }
        Ok(ConnSlot {
            gate: self.inner.clone(),
            remote,
            id,
            state,
        })
    }

    /// The connection from `remote` carries a member's link: it leaves the strangers' budget
    /// and is never closed as idle. Unknown addresses are ignored.
    pub fn member(&self, remote: SocketAddr) {
        let mut g = self.inner.lock().expect("gate lock");
        let Some(id) = g.strangers.get(&remote).map(|e| e.id) else {
            return;
        };
        if let Some(e) = g.remove(remote, id) {
            e.state.member.store(true, Ordering::Release);
        }
    }

    /// Connections strangers hold now.
    pub fn strangers(&self) -> usize {
        self.inner.lock().expect("gate lock").strangers.len()
    }
}

/// A transport's gate, set when its port starts serving (a transport that only dials has
/// none).
#[derive(Debug, Default)]
pub struct PortGate(std::sync::OnceLock<ConnGate>);

impl PortGate {
    /// The gate, made with `limits` if the port had none yet.
    pub fn serve(&self, limits: ConnLimits) -> ConnGate {
        self.0.get_or_init(|| ConnGate::new(limits)).clone()
    }

    /// The gate, if the port serves.
    pub fn get(&self) -> Option<&ConnGate> {
        self.0.get()
    }

    /// The accepted connection from `remote_addr` (`ip:port`) carries a member's link: it
    /// leaves the strangers' budget ([`ConnGate::member`]). Anything else is ignored.
    pub fn member(&self, remote_addr: &str) {
        if let (Some(gate), Ok(addr)) = (self.0.get(), remote_addr.parse::<SocketAddr>()) {
            gate.member(addr);
        }
    }
}

/// An admitted connection's place in its gate; dropping it frees the place.
#[derive(Debug)]
pub struct ConnSlot {
    gate: Arc<Mutex<Gate>>,
    remote: SocketAddr,
    id: u64,
    state: Arc<SlotState>,
}

impl ConnSlot {
    /// The remote address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Whether the gate shed this connection for a newcomer (close it).
    pub fn is_shed(&self) -> bool {
        self.state.shed.load(Ordering::Acquire)
    }

    /// Whether the connection became a member's (no idle timeout).
    pub fn is_member(&self) -> bool {
        self.state.member.load(Ordering::Acquire)
    }

    /// Wakes `waker` when the connection is shed.
    pub fn wake_on_shed(&self, waker: &Waker) {
        let mut w = self.state.waker.lock().expect("slot waker");
        if !w.as_ref().is_some_and(|o| o.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.gate
            .lock()
            .expect("gate lock")
            .remove(self.remote, self.id);
    }
}

/// First pause of an accept loop after the system refused it a descriptor or memory.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest such pause.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long an accept loop waits after `error`, given its previous pause: `None` for an error
/// of one connection (reset or aborted before it was taken: accept the next at once), else a
/// pause doubling from [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`] (out of descriptors or
/// memory: accepting again at once would spin).
pub fn accept_backoff(error: &io::Error, previous: Option<Duration>) -> Option<Duration> {
    use io::ErrorKind as K;
    if matches!(
        error.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock
    ) {
        return None;
    }
    Some(previous.map_or(ACCEPT_BACKOFF_MIN, |p| (p * 2).min(ACCEPT_BACKOFF_MAX)))
}

/// Raises the soft limit of open file descriptors to the hard limit, where the system allows.
/// Returns `(before, after)`; an error says why it could not (the soft limit stays).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn raise_fd_limit() -> Result<(u64, u64), String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("cannot read it: {e}"))?;
    // An unlimited hard limit is still capped by the kernel (`nr_open`, 1,048,576 by default).
    let target = hard.min(1 << 20);
    if soft >= target {
        return Ok((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)
        .map_err(|e| format!("cannot raise {soft} to {target}: {e}"))?;
    Ok((soft, target))
}

/// Raises the soft limit of open file descriptors (not supported on this system).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn raise_fd_limit() -> Result<(u64, u64), String> {
    Err("not supported on this system".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SMALL: ConnLimits = ConnLimits {
        per_ip: 2,
        total: 3,
        idle_timeout: Duration::from_secs(1),
    };

    #[test]
    fn an_address_past_its_share_is_refused_and_its_place_comes_back_when_one_closes() {
        let gate = ConnGate::new(SMALL);
        let a = gate.admit(addr("10.0.0.1:1000")).unwrap();
        let _b = gate.admit(addr("10.0.0.1:1001")).unwrap();
        assert_eq!(
            gate.admit(addr("10.0.0.1:1002")).unwrap_err(),
            ShedReason::PerAddress
        );
        drop(a);
        assert!(gate.admit(addr("10.0.0.1:1002")).is_ok());
    }

    #[test]
    fn a_full_port_sheds_the_oldest_of_the_busiest_address_for_a_newcomer_from_elsewhere() {
        let gate = ConnGate::new(SMALL);
        let first = gate.admit(addr("10.0.0.1:1000")).unwrap();
        let second = gate.admit(addr("10.0.0.1:1001")).unwrap();
        let other = gate.admit(addr("10.0.0.2:1000")).unwrap();
        let newcomer = gate.admit(addr("10.0.0.3:1000")).unwrap();
        assert!(first.is_shed());
        assert!(!second.is_shed() && !other.is_shed() && !newcomer.is_shed());
        assert_eq!(gate.strangers(), 3);
        // Every address now holds one: nobody is busier than a fourth one would be.
        drop(second);
        let _d = gate.admit(addr("10.0.0.4:1000")).unwrap();
        assert_eq!(
            gate.admit(addr("10.0.0.5:1000")).unwrap_err(),
            ShedReason::Total
        );
    }

    #[test]
    fn a_member_leaves_the_strangers_budget_and_is_never_shed() {
        let gate = ConnGate::new(SMALL);
        let member = gate.admit(addr("10.0.0.1:1000")).unwrap();
        gate.member(addr("10.0.0.1:1000"));
        assert!(member.is_member());
        let flood: Vec<_> = (0..3)
            .map(|i| gate.admit(addr(&format!("10.0.0.{}:2000", i + 2))).unwrap())
            .collect();
        assert_eq!(gate.strangers(), 3);
        assert!(!member.is_shed());
        drop(member);
        assert_eq!(gate.strangers(), 3);
        drop(flood);
        assert_eq!(gate.strangers(), 0);
    }

    #[test]
    fn accept_errors_of_one_connection_retry_at_once_and_running_out_backs_off_to_a_second() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(accept_backoff(&reset, None), None);
        let emfile = io::Error::from_raw_os_error(24);
        let mut pause = None;
        for _ in 0..20 {
            pause = accept_backoff(&emfile, pause);
        }
        assert_eq!(accept_backoff(&emfile, None), Some(ACCEPT_BACKOFF_MIN));
        assert_eq!(pause, Some(ACCEPT_BACKOFF_MAX));
    }
}
