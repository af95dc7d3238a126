//! The peers as the console names them, and what the transports refused (counted for `status`).
//! It turns the transports' link events other than frames and legacy calls into node inputs
//! and console lines. Links and connections refused from outside are said at a bounded rate:
//! the first three after a quiet minute in full, the rest in one summary line a minute at most.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use music262_proto::auth::Refusal;
use music262_proto::codec::CodecError;
use sync_core::{Event, LinkId, LocalTime, Node};
use transport_common::refusals::{RefusalKind, RefusalSummary};

use super::links::{LinkEvent, Links};

/// Counts of refused input, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefusedCounts {
    /// Links refused by the group-key handshake.
    pub links: u64,
    /// Frames refused by their seal (forged, replayed, unsealed).
    pub frames: u64,
    /// Legacy calls without the group key's token.
    pub legacy_calls: u64,
    /// Frames dropped by the per-peer rate limit.
    pub rate_limited: u64,
    /// Connections closed at the peer port before they carried a link (too many).
    pub connections: u64,
}

/// How often the console sums up refusals from outside at most.
pub const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
/// Refusals from outside said in full after a quiet interval, before they are summed up.
pub const REFUSALS_SAID_IN_FULL: u32 = 3;

/// Names of the links (their address, or the listen address a peer announced) and the counts
/// of refused input.
pub struct Peers {
    names: BTreeMap<LinkId, String>,
    refused: RefusedCounts,
    failed_dials: FailedDials,
    /// What the console said of refusals from outside, by source address (without port).
    outside: RefusalSummary<String>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            names: BTreeMap::new(),
            refused: RefusedCounts::default(),
            failed_dials: FailedDials::default(),
            outside: RefusalSummary::new(REFUSAL_SUMMARY_INTERVAL, REFUSALS_SAID_IN_FULL),
        }
    }
}

/// The address of `remote` without its port, for counting sources.
fn source_of(remote: &str) -> String {
    remote
        .parse::<SocketAddr>()
        .map_or_else(|_| remote.to_string(), |a| a.ip().to_string())
}

/// Addresses whose failed dial was said: the node redials them with backoff, and the console
/// hears of them again only once one links or the user types `join` there.
#[derive(Default)]
struct FailedDials(BTreeSet<String>);

impl FailedDials {
    /// A dial to `addr` failed: whether to say so (the first failure since it last linked).
    fn failed(&mut self, addr: &str) -> bool {
        self.0.insert(addr.to_string())
    }

    /// `addr` linked, or the user typed `join` there: its next failure is said.
    fn forget(&mut self, addr: &str) {
        self.0.remove(addr);
    }
}

impl Peers {
    /// The name the console uses for a link.
    pub fn name(&self, link: LinkId) -> String {
        self.names
            .get(&link)
            .cloned()
            .unwrap_or_else(|| format!("link {}", link.0))
    }

    /// The link's name, if it has one yet.
    pub fn get(&self, link: LinkId) -> Option<&String> {
        self.names.get(&link)
    }

    /// The user typed `join addr`: its failure is said even if an earlier dial's was.
    pub fn joining(&mut self, addr: &str) {
        self.failed_dials.forget(addr);
    }

    /// What the transports refused so far.
    pub fn refused(&self) -> RefusedCounts {
        self.refused
    }

    /// The summary of refusals from outside due at `now`, if any (one a minute at most).
    pub fn refusal_summary(&mut self, now: LocalTime) -> Option<String> {
        let summary = self.outside.take(now.0)?;
        tracing::warn!("{summary}");
        Some(summary.to_string())
    }

    /// Keeps the names in step with the node's events; call after the event was told.
    pub fn on_event(&mut self, e: &Event) {
        match e {
            Event::PeerConnected {
                link, listen_addr, ..
            } => {
                let name = listen_addr.clone().unwrap_or_else(|| self.name(*link));
                self.names.insert(*link, name);
            }
            Event::PeerDisconnected { link, .. } => {
                self.names.remove(link);
            }
            _ => {}
        }
    }

    /// A transport's link event (not a decoded frame, not a legacy call): fed to the node;
    /// returns what to say.
    pub fn on_link_event(
        &mut self,
        now: LocalTime,
        ev: LinkEvent,
        node: &mut Node,
        links: &mut Links,
    ) -> Option<String> {
        match ev {
            LinkEvent::Up {
                link,
                remote_addr,
                direction,
                via,
            } => {
                // Debug only: a stranger's link that never says hello would be a line each; a
                // peer's is said at info by the node's `PeerConnected`.
                tracing::debug!(peer = %remote_addr, ?direction, via = via.name(), "link up");
                self.failed_dials.forget(&remote_addr);
                self.names.insert(link, remote_addr.clone());
                node.handle_link_up(now, link, remote_addr, direction);
                None
            }
            LinkEvent::ConnectFailed { addr, error } => {
                node.handle_connect_failed(now, &addr);
                if !self.failed_dials.failed(&addr) {
                    tracing::debug!(peer = %addr, %error, "connection failed again");
                    return None;
                }
                tracing::warn!(peer = %addr, %error, "connection failed");
                Some(format!(
                    "cannot join {addr}: {error}; check that a client runs there (`peers` lists \
                     the joinable ones) and that its peer port is reachable"
                ))
            }
            LinkEvent::Frame { link, at, message } => match message {
                Ok(m) => {
                    node.handle_message(at, link, m);
                    None
                }
                Err(e @ CodecError::PeerHasKey) => {
                    // The keyed peer refuses us in turn; say why once, here, and close.
                    let peer = self.name(link);
                    self.refused.links += 1;
                    tracing::warn!(%peer, error = %e, "link refused");
                    links.close(link);
                    node.handle_link_down(now, link);
                    Some(format!("link with {peer} refused: {e}"))
                }
                Err(e) => {
                    tracing::warn!(peer = %self.name(link), error = %e, "undecodable frame dropped");
                    None
                }
            },
            LinkEvent::Down { link, error } => {
                tracing::debug!(peer = %self.name(link), ?error, "link down");
                node.handle_link_down(now, link);
                None
            }
            LinkEvent::Refused {
                link,
                remote_addr,
                dialled,
                reason,
            } => self.on_refused(now, node, link, remote_addr, dialled, reason),
            LinkEvent::Shed {
                remote_addr,
                reason,
            } => {
                self.refused.connections += 1;
                let source = remote_addr.ip().to_string();
                if !self.outside.note(now.0, source, RefusalKind::TooMany) {
                    return None;
                }
                tracing::warn!(peer = %remote_addr, error = %reason, "connection refused");
                Some(format!("connection from {remote_addr} refused: {reason}"))
            }
            LinkEvent::Legacy(_) => {
                unreachable!("legacy calls go to the legacy adapter, not here")
            }
        }
    }

    /// A transport refused a link, a frame or a call: counted, logged, and said once per link
    /// refused. Nothing of it reached the node, so nothing changed.
    fn on_refused(
        &mut self,
        now: LocalTime,
        node: &mut Node,
        link: Option<LinkId>,
        remote_addr: String,
        dialled: bool,
        reason: Refusal,
    ) -> Option<String> {
        let peer = link.map_or(remote_addr, |l| self.name(l));
        match &reason {
            Refusal::Auth(_) if link.is_none() => {
                self.refused.links += 1;
                if dialled {
                    node.handle_connect_failed(now, &peer);
                } else if !self
                    .outside
                    .note(now.0, source_of(&peer), RefusalKind::WrongKey)
                {
                    // Counted for the next summary.
                    return None;
                }
                tracing::warn!(%peer, error = %reason, "link refused");
                return Some(format!("link with {peer} refused: {reason}"));
            }
            Refusal::Auth(_) => {
                self.refused.frames += 1;
                tracing::warn!(%peer, error = %reason, "frame refused");
            }
            Refusal::RateLimited { dropped, .. } => {
                self.refused.rate_limited += dropped;
                tracing::warn!(%peer, error = %reason, "frames dropped by the rate limit");
            }
            Refusal::LegacyRateLimited { dropped, .. } => {
                self.refused.legacy_calls += dropped;
                tracing::warn!(%peer, error = %reason, "legacy calls refused");
            }
            Refusal::LegacyUnauthenticated { .. } => {
                self.refused.legacy_calls += 1;
                tracing::warn!(%peer, error = %reason, "legacy call refused");
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{DisconnectReason, NodeId};

    #[test]
    fn a_peer_is_named_by_its_listen_address_from_its_handshake_until_it_goes() {
        let mut peers = Peers::default();
        assert_eq!(peers.name(LinkId(4)), "link 4");
        peers.on_event(&Event::PeerConnected {
            link: LinkId(4),
            peer: NodeId(2),
            listen_addr: Some("10.0.0.2:50052".to_string()),
        });
        assert_eq!(peers.name(LinkId(4)), "10.0.0.2:50052");
        peers.on_event(&Event::PeerDisconnected {
            link: LinkId(4),
            peer: Some(NodeId(2)),
            reason: DisconnectReason::Closed,
        });
        assert_eq!(peers.get(LinkId(4)), None);
    }
}
