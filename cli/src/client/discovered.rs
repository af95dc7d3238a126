//! What the client does with discovery (`crate::discovery`): announces itself, joins the rooms
//! of its `--group` as they are found (offering their addresses to the node, which decides
//! whom to link within its cap; the link's key check decides the rest), and, started without
//! `--server` and with nothing at the default address, takes a music server it finds.

use std::time::{Duration, Instant};

use sync_core::{LinkCommand, LocalTime, Node, PeerAddr};

use crate::console::Printer;
use crate::discovery::{Discovery, Room, RoomAnnouncement};

/// The music server's address when `--server` is not given.
pub const DEFAULT_SERVER: &str = "localhost:50051";

/// How often the rooms found are looked at for `--group`.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a client started without `--server` looks for one on the network when nothing
/// answers at the default address.
pub const SERVER_WAIT: Duration = Duration::from_secs(3);

/// Discovery as the client uses it.
pub struct Discovered {
    discovery: Discovery,
    /// `--group`: rooms announcing it are joined.
    group: Option<String>,
    /// Whether this client has a group key: with one, only rooms that need a key are joined.
    key: bool,
    own: u64,
    last_poll: Instant,
}

impl Discovered {
    /// Starts discovery and announces this client.
    pub fn start(a: &RoomAnnouncement) -> Result<Discovered, String> {
        let discovery = Discovery::start(a.bind)?;
        discovery.announce_room(a)?;
        Ok(Discovered {
            discovery,
            group: a.group.clone(),
            key: a.key,
            own: a.node_id,
            last_poll: Instant::now(),
        })
    }

    /// The discovery table.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Called on the driver's tick: with `--group`, the new rooms of the group are offered to
    /// the node. Returns what to say.
    pub fn tick(&mut self, node: &mut Node, now: LocalTime) -> Vec<String> {
        let Some(group) = &self.group else {
            return Vec::new();
        };
        if self.last_poll.elapsed() < POLL_EVERY {
            return Vec::new();
        }
        self.last_poll = Instant::now();
        let rooms: Vec<Room> = self
            .discovery
            .take_new_rooms(self.own)
            .into_iter()
            .filter(|r| r.group == *group && r.key == self.key)
            .collect();
        let addrs: Vec<PeerAddr> = rooms
            .iter()
            .filter_map(|r| r.addr())
            .filter_map(|a| PeerAddr::parse(&a.to_string()).ok())
            .collect();
        if addrs.is_empty() {
            return Vec::new();
        }
        let _ = node.handle_link_command(now, LinkCommand::PeerAddresses { addrs });
        rooms
            .iter()
            .map(|r| {
                format!(
                    "found room {} of group {group} at {}",
                    r.name,
                    r.addr().map_or("-".into(), |a| a.to_string())
                )
            })
            .collect()
    }

    /// Withdraws the announcement.
    pub fn shutdown(&self) {
        self.discovery.shutdown();
    }
}

/// Starts discovery unless `--no-discovery`: a failure is one line and the client runs on
/// without it.
pub fn start_or_say(a: Option<RoomAnnouncement>, printer: &Printer) -> Option<Discovered> {
    let a = a?;
    match Discovered::start(&a) {
        Ok(d) => {
            let group = a
                .group
                .as_deref()
                .map_or(String::new(), |g| format!(" in group {g}"));
            printer.println(format!(
                "announced on the local network as {}{group} (mDNS; `discover` lists the rooms \
                 found, --no-discovery turns it off)",
                a.name
            ));
            Some(d)
        }
        Err(e) => {
            printer.println(format!("warning: {e}; rooms must be joined by address"));
            None
        }
    }
}

/// The music server to use: `given` (`--server`); else the default address when something
/// answers there; else one found on the network (said so); else the default address, which
/// the client keeps trying.
pub async fn server_addr(given: Option<&str>, d: Option<&Discovered>, printer: &Printer) -> String {
    if let Some(addr) = given {
        return addr.to_string();
    }
    let Some(d) = d else {
        return DEFAULT_SERVER.to_string();
    };
    if answers(DEFAULT_SERVER).await {
        return DEFAULT_SERVER.to_string();
    }
    match find_server(&d.discovery).await {
        Some((addr, name)) => {
            printer.println(format!(
                "no music server at {DEFAULT_SERVER}; using {name} at {addr}, found on the \
                 local network"
            ));
            addr
        }
        None => DEFAULT_SERVER.to_string(),
    }
}

/// Whether something accepts connections at `addr` (`host:port`) within half a second.
async fn answers(addr: &str) -> bool {
    let dial = tokio::net::TcpStream::connect(addr);
    matches!(
        tokio::time::timeout(Duration::from_millis(500), dial).await,
        Ok(Ok(_))
    )
}

/// A music server found on the network within [`SERVER_WAIT`], as `host:port` with its name.
async fn find_server(discovery: &Discovery) -> Option<(String, String)> {
    let deadline = Instant::now() + SERVER_WAIT;
    loop {
        if let Some(s) = discovery.servers().into_iter().next()
            && let Some(addr) = s.addrs.first()
        {
            return Some((addr.to_string(), s.name));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
