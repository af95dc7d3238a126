//! The music server's registry of joinable peer addresses, each alive while its lease is
//! renewed, and how a peer's announced address is checked and completed. A registration is
//! changed only by its owner: the holder of its token, or, for an old client that never
//! presents one, the IP address that made it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use music262_proto::audio_service::{RegisterPeerRequest, RegisterPeerResponse, RegisteredPeer};
use music262_proto::limits::MAX_REGISTRATIONS;
use tonic::Status;

/// Shortest and longest lease granted to a registered peer.
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// See [`MIN_LEASE`].
pub const MAX_LEASE: Duration = Duration::from_secs(300);
/// The lease of a peer that asks for none.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
struct Lease {
    node_id: u64,
    expires: Instant,
    /// What the owner presents to renew, move or withdraw it.
    token: String,
    /// The IP address that made it, which may change it without a token while unclaimed.
    owner: Option<IpAddr>,
    /// Whether the token was ever presented or claimed: then only the token changes it.
    claimed: bool,
}

/// Who asks to change a registration: the token presented (empty: none) and the caller's IP
/// address as seen.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// `RegisterPeerRequest.token` or `UnregisterPeerRequest.token`.
    pub token: &'a str,
    /// The caller's address.
    pub ip: Option<IpAddr>,
}

impl Caller<'_> {
    /// Whether this caller may renew, move or withdraw `lease`: with its token, or, for a
    /// lease never claimed (an old client's), without a token from the address that made it.
    fn may_change(&self, lease: &Lease) -> bool {
        if self.token.is_empty() {
            !lease.claimed && self.ip.is_some() && self.ip == lease.owner
        } else {
            same_token(self.token, &lease.token)
        }
    }
}

/// Token comparison whose time does not tell how much of a guess was right.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A fresh registration token: 128 random bits in hex.
fn new_token() -> Result<String, Status> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Status::internal(format!("no randomness for a registration token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn refused(addr: &str) -> Status {
    Status::permission_denied(format!(
        "peer address {addr} is registered by another client; only its registration token \
         renews or withdraws it"
    ))
}

/// A registration granted: the lease and the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The lease granted.
    pub lease: Duration,
    /// The registration's token.
    pub token: String,
}

/// Joinable peer addresses, each alive while its lease is renewed.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl PeerRegistry {
    /// Registers or renews `addr` for `caller` (see [`Caller`] for who may renew); `claim`
    /// makes the token required from now on. Refused with PERMISSION_DENIED when `addr` is
    /// another client's, RESOURCE_EXHAUSTED when the registry is full.
    pub fn register(
        &self,
        addr: String,
        node_id: u64,
        lease: Duration,
        caller: Caller<'_>,
        claim: bool,
        now: Instant,
    ) -> Result<Granted, Status> {
        let lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        let mut leases = self.leases.lock().expect("registry lock");
        let held = leases.get(&addr).filter(|l| l.expires > now).cloned();
        if held.as_ref().is_some_and(|l| !caller.may_change(l)) {
            return Err(refused(&addr));
        }
        if held.is_none() && leases.len() >= MAX_REGISTRATIONS {
            leases.retain(|_, l| l.expires > now);
            if leases.len() >= MAX_REGISTRATIONS {
                return Err(Status::resource_exhausted(format!(
                    "the registry is full ({MAX_REGISTRATIONS} registrations)"
                )));
            }
        }
        let (token, claimed) = match held {
            Some(l) => (l.token.clone(), l.claimed || !caller.token.is_empty()),
            None => (new_token()?, false),
        };
        // One address per node: a client that moved (new port, new address) replaces its
        // other registrations, those it may change.
        if node_id != 0 {
            leases.retain(|a, l| l.node_id != node_id || *a == addr || !caller.may_change(l));
        }
        leases.insert(
            addr,
            Lease {
                node_id,
                expires: now + lease,
                token: token.clone(),
                owner: caller.ip,
                claimed: claimed || claim,
            },
        );
        Ok(Granted { lease, token })
    }

    /// Withdraws `addr` and, if `node_id` is not 0, the other registrations of that node that
    /// `caller` may change. Refused with PERMISSION_DENIED, withdrawing nothing, when `addr` is
    /// another client's, or when every registration named is.
    pub fn unregister(
        &self,
        addr: &str,
        node_id: u64,
        caller: Caller<'_>,
        now: Instant,
    ) -> Result<(), Status> {
        let mut leases = self.leases.lock().expect("registry lock");
        let named = |a: &String, l: &Lease| {
            l.expires > now && (a == addr || (node_id != 0 && l.node_id == node_id))
        };
        if leases
            .get(addr)
            .is_some_and(|l| l.expires > now && !caller.may_change(l))
        {
            return Err(refused(addr));
        }
        let (mut mine, mut others) = (0, 0);
        for (a, l) in leases.iter().filter(|(a, l)| named(a, l)) {
            if caller.may_change(l) {
                mine += 1;
            } else {
                others += 1;
                tracing::debug!(addr = %a, "unregistration of another client's address refused");
            }
        }
        if mine == 0 && others > 0 {
            return Err(Status::permission_denied(format!(
                "the registrations of node {node_id:016x} are another client's; only their \
                 tokens withdraw them"
            )));
        }
        leases.retain(|a, l| !(named(a, l) && caller.may_change(l)));
        Ok(())
    }

    /// Live entries (address, node id, time left), expired ones forgotten.
    pub fn live(&self, now: Instant) -> Vec<(String, u64, Duration)> {
        let mut leases = self.leases.lock().expect("registry lock");
        leases.retain(|_, l| l.expires > now);
        leases
            .iter()
            .map(|(a, l)| (a.clone(), l.node_id, l.expires - now))
            .collect()
    }

    /// Up to `max` live entries with an address after `after`, ascending, as `audio_service`
    /// lists them, and the number of all live entries.
    pub fn listed(&self, after: &str, max: usize, now: Instant) -> (Vec<RegisteredPeer>, usize) {
        let mut leases = self.leases.lock().expect("registry lock");
        leases.retain(|_, l| l.expires > now);
        let page = leases
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take(max)
            .map(|(a, l)| RegisteredPeer {
                peer_addr: a.clone(),
                node_id: l.node_id,
                lease_remaining_ms: (l.expires - now).as_millis() as u64,
            })
            .collect();
        (page, leases.len())
    }

    /// Handles a `RegisterPeer` call from `observed` (the caller's address, as seen): checks
    /// the announced address, puts the observed one in place of an unspecified host, and
    /// registers it.
    pub fn register_request(
        &self,
        req: RegisterPeerRequest,
        observed: Option<IpAddr>,
        now: Instant,
    ) -> Result<RegisterPeerResponse, Status> {
        // An empty host (`:port`) asks, like 0.0.0.0, for the address the caller is seen from.
        let (host, port) = match req.peer_addr.strip_prefix(':') {
            Some(port) if !port.contains(':') => check_peer_addr(&format!("0.0.0.0:{port}"))?,
            _ => check_peer_addr(&req.peer_addr)?,
        };
        // A peer that does not know its own address (0.0.0.0, or an empty host) is listed at
        // the address the server sees it from.
        let unspecified = matches!(host.as_str(), "0.0.0.0" | "::" | "*");
        let addr = match (unspecified, observed) {
            (true, Some(ip)) => join_host_port(&ip.to_string(), port),
            _ => join_host_port(&host, port),
        };
        let lease = if req.lease_ms == 0 {
            DEFAULT_LEASE
        } else {
            Duration::from_millis(req.lease_ms)
        };
        let caller = Caller {
            token: &req.token,
            ip: observed,
        };
        let granted = self.register(addr.clone(), req.node_id, lease, caller, req.claim, now)?;
        Ok(RegisterPeerResponse {
            lease_ms: granted.lease.as_millis() as u64,
            peer_addr: addr,
            observed_ip: observed.map(|ip| ip.to_string()).unwrap_or_default(),
            token: granted.token,
        })
    }
}

/// Checks a `host:port` a peer announces: a host and a non-zero port.
fn check_peer_addr(addr: &str) -> Result<(String, u16), Status> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        Status::invalid_argument(format!("peer address `{addr}` is not host:port"))
    })?;
    let port: u16 =
        port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            Status::invalid_argument(format!("bad port in peer address `{addr}`"))
        })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
        return Err(Status::invalid_argument(format!(
            "bad host in peer address `{addr}`"
        )));
    }
    Ok((host.to_string(), port))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const HOST_B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    fn legacy(ip: Option<IpAddr>) -> Caller<'static> {
        Caller { token: "", ip }
    }

    fn addrs(r: &PeerRegistry, now: Instant) -> Vec<String> {
        r.live(now).into_iter().map(|(a, _, _)| a).collect()
    }

    #[test]
    fn leases_expire_and_a_node_keeps_one_address() {
        let r = PeerRegistry::default();
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let a = r.register("a:1".into(), 7, secs(5), legacy(HOST_A), false, t0);
        assert_eq!(a.unwrap().lease, secs(5));
        let b = r.register(
            "b:1".into(),
            8,
            Duration::from_millis(1),
            legacy(HOST_A),
            false,
            t0,
        );
        assert_eq!(b.unwrap().lease, MIN_LEASE);
        r.register("a:2".into(), 7, secs(5), legacy(HOST_A), false, t0)
            .unwrap();
        assert_eq!(addrs(&r, t0), ["a:2", "b:1"]);
        assert_eq!(addrs(&r, t0 + secs(3)), ["a:2"]);
        r.unregister("a:2", 0, legacy(HOST_A), t0).unwrap();
        assert!(r.live(t0).is_empty());
    }

    #[test]
    fn a_claimed_registration_is_renewed_and_withdrawn_only_with_its_token() {
        let r = PeerRegistry::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(30);
        let token = r
            .register("a:1".into(), 7, lease, legacy(HOST_A), true, t0)
            .unwrap()
            .token;
        assert_eq!(token.len(), 32);
        let mine = Caller {
            token: &token,
            ip: HOST_B,
        };
        let guess = "0".repeat(32);
        let stranger = Caller {
            token: &guess,
            ip: HOST_A,
        };
        let strangers = [stranger, legacy(HOST_A), legacy(HOST_B)];
        for who in strangers {
            let e = r.unregister("a:1", 7, who, t0).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
            let e = r.unregister("", 7, who, t0).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
            let e = r
                .register("a:1".into(), 9, lease, who, false, t0)
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        }
        for (i, who) in strangers.into_iter().enumerate() {
            // Registering elsewhere under the same node id does not take the address away.
            r.register(format!("x:{}", i + 1), 7, lease, who, false, t0)
                .unwrap();
            assert!(addrs(&r, t0).contains(&"a:1".to_string()));
        }
        let renewed = r.register("a:1".into(), 7, lease, mine, false, t0).unwrap();
        assert_eq!(renewed.token, token, "a renewal keeps the token");
        r.unregister("a:1", 7, mine, t0).unwrap();
        assert!(!addrs(&r, t0).contains(&"a:1".to_string()));
    }

    #[test]
    fn an_old_client_without_a_token_keeps_its_registration_from_its_own_address() {
        let r = PeerRegistry::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(30);
        r.register("a:1".into(), 0, lease, legacy(HOST_A), false, t0)
            .unwrap();
        let e = r.unregister("a:1", 0, legacy(HOST_B), t0).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        r.register("a:1".into(), 0, lease, legacy(HOST_A), false, t0)
            .unwrap();
        r.unregister("a:1", 0, legacy(HOST_A), t0).unwrap();
        assert!(r.live(t0).is_empty());
        // Nothing registered: withdrawing is not an error, and a lapsed address is free.
        r.unregister("a:1", 0, legacy(HOST_B), t0).unwrap();
        r.register("b:1".into(), 0, Duration::ZERO, legacy(HOST_A), true, t0)
            .unwrap();
        let later = t0 + MIN_LEASE + Duration::from_millis(1);
        r.register("b:1".into(), 0, lease, legacy(HOST_B), false, later)
            .unwrap();
    }

    #[test]
    fn pages_list_every_live_registration_once_in_address_order() {
        let r = PeerRegistry::default();
        let t0 = Instant::now();
        for i in 0..250 {
            r.register(
                format!("h{i:03}:1"),
                0,
                Duration::from_secs(30),
                legacy(HOST_A),
                false,
                t0,
            )
            .unwrap();
        }
        let (mut seen, mut after) = (Vec::new(), String::new());
        loop {
            let (page, total) = r.listed(&after, 100, t0);
            assert_eq!(total, 250);
            let Some(last) = page.last() else { break };
            after = last.peer_addr.clone();
            seen.extend(page.into_iter().map(|p| p.peer_addr));
        }
        let expected: Vec<String> = (0..250).map(|i| format!("h{i:03}:1")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn announced_addresses_are_checked() {
        assert!(check_peer_addr("10.0.0.1:50052").is_ok());
        assert!(check_peer_addr("[::1]:50052").is_ok());
        assert!(check_peer_addr("host").is_err());
        assert!(check_peer_addr("host:0").is_err());
        assert!(check_peer_addr(":50052").is_err());
        assert!(check_peer_addr("a b:1").is_err());
    }
}
