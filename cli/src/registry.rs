//! The music server's registry of joinable peer addresses, each alive while its lease is
//! renewed, and how a peer's announced address is checked and completed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use music262_proto::audio_service::{RegisterPeerRequest, RegisterPeerResponse, RegisteredPeer};
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
}

/// Joinable peer addresses, each alive while its lease is renewed.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl PeerRegistry {
    /// Registers or renews `addr`; returns the lease granted.
    pub fn register(&self, addr: String, node_id: u64, lease: Duration, now: Instant) -> Duration {
        let lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        let mut leases = self.leases.lock().expect("registry lock");
        // One address per node: a client that moved (new port, new address) replaces itself.
        if node_id != 0 {
            leases.retain(|a, l| l.node_id != node_id || *a == addr);
        }
        leases.insert(
            addr,
            Lease {
                node_id,
                expires: now + lease,
            },
        );
        lease
    }

    /// Removes `addr` (and, if given, every address of `node_id`).
    pub fn unregister(&self, addr: &str, node_id: u64) {
        let mut leases = self.leases.lock().expect("registry lock");
        leases.remove(addr);
        if node_id != 0 {
            leases.retain(|_, l| l.node_id != node_id);
        }
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

    /// The live entries as `audio_service` lists them.
    pub fn listed(&self, now: Instant) -> Vec<RegisteredPeer> {
        self.live(now)
            .into_iter()
            .map(|(peer_addr, node_id, left)| RegisteredPeer {
                peer_addr,
                node_id,
                lease_remaining_ms: left.as_millis() as u64,
            })
            .collect()
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
        let granted = self.register(addr.clone(), req.node_id, lease, now);
        Ok(RegisterPeerResponse {
            lease_ms: granted.as_millis() as u64,
            peer_addr: addr,
            observed_ip: observed.map(|ip| ip.to_string()).unwrap_or_default(),
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

    #[test]
    fn leases_expire_and_a_node_keeps_one_address() {
        let r = PeerRegistry::default();
        let t0 = Instant::now();
        assert_eq!(
            r.register("a:1".into(), 7, Duration::from_secs(5), t0),
            Duration::from_secs(5)
        );
        assert_eq!(
            r.register("b:1".into(), 8, Duration::from_millis(1), t0),
            MIN_LEASE
        );
        r.register("a:2".into(), 7, Duration::from_secs(5), t0);
        let live: Vec<String> = r.live(t0).into_iter().map(|(a, _, _)| a).collect();
        assert_eq!(live, vec!["a:2".to_string(), "b:1".to_string()]);
        let later: Vec<String> = r
            .live(t0 + Duration::from_secs(3))
            .into_iter()
            .map(|(a, _, _)| a)
            .collect();
        assert_eq!(later, vec!["a:2".to_string()]);
        r.unregister("a:2", 0);
        assert!(r.live(t0).is_empty());
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
