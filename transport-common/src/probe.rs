//! The parts of a link both transports run alike: a clock probe's provisional transmit
//! instant, and the group-key handshake's roles, failures and timings.

use std::time::Duration;

use music262_proto::auth::{AuthError, Role};
use sync_core::{Direction, LocalTime, Message};

/// Frames queued towards one peer before new ones are dropped (the sync protocol tolerates
/// loss; blocking the driver on one slow peer would hurt every other).
pub const LINK_QUEUE: usize = 512;
/// How long a dial may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the group-key handshake of a new link may take.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused link stays open so that the peer can read our opening frame.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(300);

/// Stamps a probe's transmit instant (`t0`, or a reply's `t2`, kept at or after `t1`) with
/// `now` before it is encoded, and returns the instant written; other messages are left alone
/// (`None`). The transport rewrites it later, closer to the socket.
pub fn stamp_message(message: &mut Message, now: u64) -> Option<u64> {
    match message {
        Message::Probe(p) => {
            p.t0 = LocalTime(now);
            Some(p.t0.0)
        }
        Message::ProbeReply(r) => {
            r.t2 = LocalTime(now).max(r.t1);
            Some(r.t2.0)
        }
        _ => None,
    }
}

/// This end's role in the group-key handshake of a link opened in `direction`.
pub fn auth_role(direction: Direction) -> Role {
    match direction {
        Direction::Outgoing => Role::Dialler,
        Direction::Incoming => Role::Acceptor,
    }
}

/// Why a group-key handshake did not complete.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// The peer failed the group-key check.
    Refused(AuthError),
    /// The link broke, or the peer said nothing in time.
    Broken(String),
}

impl HandshakeFailure {
    /// The handshake took longer than [`AUTH_TIMEOUT`].
    pub fn too_slow() -> Self {
        HandshakeFailure::Broken("no group-key handshake in time".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::announce;
    use sync_core::{Probe, ProbeReply};

    #[test]
    fn a_probe_is_stamped_now_and_a_reply_never_before_its_receive_instant() {
        let mut p = Message::Probe(Probe {
            seq: 1,
            t0: LocalTime(0),
            announce: announce(1),
        });
        assert_eq!(stamp_message(&mut p, 500), Some(500));
        let Message::Probe(p) = p else { panic!() };
        assert_eq!(p.t0, LocalTime(500));
        let mut r = Message::ProbeReply(ProbeReply {
            seq: 1,
            t0: LocalTime(10),
            t1: LocalTime(900),
            t2: LocalTime(0),
            announce: announce(1),
        });
        assert_eq!(stamp_message(&mut r, 800), Some(900));
        let mut other = Message::Leave(sync_core::LeaveReason::Leaving);
        assert_eq!(stamp_message(&mut other, 800), None);
    }
}
