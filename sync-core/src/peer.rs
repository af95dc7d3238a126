//! Typed names of peers, parsed where text comes in (the console, the legacy adapter): a
//! `host:port` address to dial, and for `leave` an address or a node id. The core compares
//! these values; it never matches strings typed by a user.

use std::fmt;

use crate::node::CommandError;
use crate::state::NodeId;

/// A peer's `host:port` (an IP address or a host name, IPv6 in brackets; a port from 1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerAddr(String);

/// Text that is not a `host:port` address.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("`{0}` is not an address; use ip:port, like 192.168.1.10:50052")]
pub struct BadAddr(pub String);

impl PeerAddr {
    /// Parses `host:port`: a non-empty host without spaces or slashes, and a port from 1 to
    /// 65535.
    pub fn parse(text: &str) -> Result<Self, BadAddr> {
        let bad = || BadAddr(text.to_string());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
            return Err(bad());
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 => Ok(PeerAddr(text.to_string())),
            _ => Err(bad()),
        }
    }

    /// The address as text, as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest room name, in bytes: longer names are cut (on a character boundary).
pub const MAX_NAME_LEN: usize = 64;

/// A room's name as it may be shown and sent: control characters dropped, surrounding blanks
/// trimmed, cut to [`MAX_NAME_LEN`] bytes; `None` when nothing is left.
pub fn room_name(text: &str) -> Option<String> {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let mut name = clean.trim();
    if name.len() > MAX_NAME_LEN {
        let mut end = MAX_NAME_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name = name[..end].trim_end();
    }
    (!name.is_empty()).then(|| name.to_string())
}

impl NodeId {
    /// Parses a node id as shown by the node (16 hex digits, either case).
    pub fn from_hex(text: &str) -> Option<NodeId> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(NodeId)
    }
}

/// The peer a `leave` names: by an address of its link (the transport's or the one it listens
/// on), or by its node id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PeerSelector {
    /// The link whose remote or listen address this is.
    Addr(PeerAddr),
    /// The link to this node.
    Node(NodeId),
}

impl PeerSelector {
    /// Parses a node id (16 hex digits) or a `host:port`. Text that is neither names no
    /// connected peer, and is refused as [`CommandError::UnknownPeer`].
    pub fn parse(text: &str) -> Result<Self, CommandError> {
        if let Some(id) = NodeId::from_hex(text) {
            return Ok(PeerSelector::Node(id));
        }
        PeerAddr::parse(text)
            .map(PeerSelector::Addr)
            .map_err(|_| CommandError::UnknownPeer(text.to_string()))
    }
}

impl fmt::Display for PeerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSelector::Addr(a) => a.fmt(f),
            PeerSelector::Node(id) => id.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_host_and_a_port_from_1() {
        for ok in ["10.0.0.2:50052", "[::1]:50052", "music.local:1"] {
            assert_eq!(PeerAddr::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "10.0.0.2",
            ":50052",
            "10.0.0.2:0",
            "10.0.0.2:x",
            "a b:1",
            "a/b:1",
        ] {
            assert_eq!(PeerAddr::parse(bad), Err(BadAddr(bad.to_string())));
        }
    }

    #[test]
    fn leave_names_a_node_by_16_hex_digits_or_a_link_by_address() {
        assert_eq!(
            PeerSelector::parse("00000000000000aB"),
            Ok(PeerSelector::Node(NodeId(0xab)))
        );
        assert_eq!(
            PeerSelector::parse("node1:1"),
            Ok(PeerSelector::Addr(PeerAddr::parse("node1:1").unwrap()))
        );
        // Not quite an id (a sign, 15 digits) and not an address: no peer is named so.
        for text in ["+000000000000001", "000000000000001", "nobody"] {
            assert_eq!(
                PeerSelector::parse(text),
                Err(CommandError::UnknownPeer(text.to_string()))
            );
        }
    }
}
