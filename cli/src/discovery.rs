//! Rooms and music servers that find each other on the local network by mDNS/DNS-SD
//! (`mdns-sd`). A client announces [`ROOM_TYPE`] with its name, node id, group name, transports
//! and whether a group key is needed (never the key); a music server announces
//! [`SERVER_TYPE`]. What is found is kept in a table that the client reads: `discover` lists
//! it, `join <name>` looks a name up in it, `--group` joins the rooms it adds. mdns-sd runs
//! its own thread; one more thread here turns its events into the table.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

/// The service type a client announces.
pub const ROOM_TYPE: &str = "_music262._tcp.local.";
/// The service type a music server announces.
pub const SERVER_TYPE: &str = "_music262-srv._tcp.local.";
/// Longest room name announced, in bytes (a DNS label holds 63; the node id is added).
const MAX_NAME: usize = 40;

/// A room (a client) found on the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Room {
    /// Its name.
    pub name: String,
    /// Its node id, in hex.
    pub node_id: String,
    /// The group name it announces ("" for none).
    pub group: String,
    /// The transports it accepts links on (`grpc,quic`).
    pub transports: String,
    /// Whether linking to it needs the group key.
    pub key: bool,
    /// Where it accepts links, IPv4 first.
    pub addrs: Vec<SocketAddr>,
}

impl Room {
    /// The address to dial: the first one, IPv4 when it has one.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }
}

/// A music server found on the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// Its name (the host it runs on).
    pub name: String,
    /// Where it listens, IPv4 first.
    pub addrs: Vec<SocketAddr>,
}

/// What a client says about itself.
#[derive(Clone, Debug)]
pub struct RoomAnnouncement {
    /// The room's name.
    pub name: String,
    /// Its node id.
    pub node_id: u64,
    /// The group name (`--group`), if any.
    pub group: Option<String>,
    /// Whether it has a group key.
    pub key: bool,
    /// Its peer port.
    pub port: u16,
    /// The address it listens on (unspecified: all of the host's, followed as they change).
    pub bind: IpAddr,
}

#[derive(Default)]
struct Found {
    rooms: BTreeMap<String, Room>,
    servers: BTreeMap<String, Server>,
    /// Rooms resolved since the last [`Discovery::take_new_rooms`].
    new_rooms: Vec<Room>,
}

/// The mDNS responder and browser of one process.
pub struct Discovery {
    daemon: ServiceDaemon,
    found: Arc<Mutex<Found>>,
}

impl Discovery {
    /// Starts mDNS and browses for rooms and servers, on every interface, or only on the
    /// interface of `bind` when the process listens on one address (a client bound to
    /// loopback announces nothing to the network).
    pub fn start(bind: IpAddr) -> Result<Discovery, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS discovery: {e}"))?;
        if !bind.is_unspecified() {
            // Queued before any query or announcement, so nothing leaves on other interfaces.
            daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(IfKind::Addr(bind)))
                .map_err(|e| format!("mDNS discovery: {e}"))?;
        }
        let found = Arc::new(Mutex::new(Found::default()));
        for ty in [ROOM_TYPE, SERVER_TYPE] {
            let events = daemon
                .browse(ty)
                .map_err(|e| format!("mDNS discovery: {e}"))?;
            let found = found.clone();
            std::thread::Builder::new()
                .name("mdns-browse".into())
                .spawn(move || {
                    while let Ok(event) = events.recv() {
                        on_event(&found, event);
                    }
                })
                .map_err(|e| format!("mDNS discovery: {e}"))?;
        }
        Ok(Discovery { daemon, found })
    }

    /// Announces this client as a room.
    pub fn announce_room(&self, a: &RoomAnnouncement) -> Result<(), String> {
        let name = truncate(&a.name, MAX_NAME);
        let id = format!("{:016x}", a.node_id);
        let props = [
            ("name", name.clone()),
            ("id", id.clone()),
            ("group", a.group.clone().unwrap_or_default()),
            ("tr", "grpc,quic".to_string()),
            ("key", if a.key { "yes" } else { "no" }.to_string()),
        ];
        // The host name is the node's own, so that rooms on hosts of one name (containers,
        // namespaces) never mix their addresses.
        let host = format!("m262-{id}.local.");
        self.register(
            ROOM_TYPE,
            &format!("{name} {id}"),
            &host,
            a.bind,
            a.port,
            &props,
        )
    }

    /// Announces a music server on `port`.
    pub fn announce_server(&self, name: &str, bind: IpAddr, port: u16) -> Result<(), String> {
        let name = truncate(name, MAX_NAME);
        let host = format!("m262-server-{port}-{}.local.", sanitize(&name));
        let props = [("name", name.clone())];
        self.register(
            SERVER_TYPE,
            &format!("{name} {port}"),
            &host,
            bind,
            port,
            &props,
        )
    }

    fn register(
        &self,
        ty: &str,
        instance: &str,
        host: &str,
        bind: IpAddr,
        port: u16,
        props: &[(&str, String)],
    ) -> Result<(), String> {
        let info = if bind.is_unspecified() {
            ServiceInfo::new(ty, instance, host, (), port, props).map(ServiceInfo::enable_addr_auto)
        } else {
            ServiceInfo::new(ty, instance, host, bind, port, props)
        };
        let info = info.map_err(|e| format!("mDNS announcement: {e}"))?;
        self.daemon
            .register(info)
            .map_err(|e| format!("mDNS announcement: {e}"))
    }

    /// The rooms found, by name then node id, other than `own` (this client's node id).
    pub fn rooms(&self, own: u64) -> Vec<Room> {
        let own = format!("{own:016x}");
        let mut rooms: Vec<Room> = self
            .lock()
            .rooms
            .values()
            .filter(|r| r.node_id != own)
            .cloned()
            .collect();
        rooms.sort_by(|a, b| (&a.name, &a.node_id).cmp(&(&b.name, &b.node_id)));
        rooms
    }

    /// The music servers found, by name.
    pub fn servers(&self) -> Vec<Server> {
        self.lock().servers.values().cloned().collect()
    }

    /// The rooms resolved since the last call, other than `own`.
    pub fn take_new_rooms(&self, own: u64) -> Vec<Room> {
        let own = format!("{own:016x}");
        let mut found = self.lock();
        std::mem::take(&mut found.new_rooms)
            .into_iter()
            .filter(|r| r.node_id != own)
            .collect()
    }

    /// The room named `name` (case does not matter), or its node id; an error that says what
    /// to do when none or several match.
    pub fn find_room(&self, name: &str, own: u64) -> Result<Room, String> {
        let rooms = self.rooms(own);
        let matching: Vec<&Room> = rooms
            .iter()
            .filter(|r| {
                r.name.eq_ignore_ascii_case(name)
                    || r.node_id.trim_start_matches('0') == name.trim_start_matches('0')
            })
            .collect();
        match matching.as_slice() {
            [room] => Ok((*room).clone()),
            [] => Err(format!(
                "no room named `{name}` found on the network (see `discover`); an address needs \
                 its port, like `join 192.168.1.10:50052`"
            )),
            several => Err(format!(
                "{} rooms are named `{name}`: join one by address ({})",
                several.len(),
                several
                    .iter()
                    .filter_map(|r| r.addr())
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Found> {
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Withdraws the announcements (a goodbye on the network) and stops.
    pub fn shutdown(&self) {
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_millis(500));
        }
    }
}

/// The `discover` text: the rooms and servers found.
pub fn listing(rooms: &[Room], servers: &[Server]) -> String {
    let mut out = Vec::new();
    if rooms.is_empty() {
        out.push("no other room found on the local network".to_string());
    } else {
        out.push(format!(
            "{} room(s) found (join one with `join <name>`):",
            rooms.len()
        ));
        for r in rooms {
            let addr = r.addr().map_or("-".to_string(), |a| a.to_string());
            let group = if r.group.is_empty() { "-" } else { &r.group };
            let key = if r.key { "group key" } else { "no key" };
            out.push(format!(
                "  {:<20} {addr:<24} group {group}, {key}, node {}",
                r.name, r.node_id
            ));
        }
    }
    for s in servers {
        let addr = s.addrs.first().map_or("-".to_string(), |a| a.to_string());
        out.push(format!("music server {} at {addr}", s.name));
    }
    out.join("\n")
}

/// One event of mdns-sd's browser into the table.
fn on_event(found: &Mutex<Found>, event: ServiceEvent) {
    let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
    match event {
        ServiceEvent::ServiceResolved(s) => {
            let addrs = socket_addrs(s.addresses.iter().map(|a| a.to_ip_addr()), s.port);
            let prop = |k: &str| s.get_property_val_str(k).unwrap_or_default().to_string();
            if s.ty_domain == ROOM_TYPE {
                let room = Room {
                    name: prop("name"),
                    node_id: prop("id"),
                    group: prop("group"),
                    transports: prop("tr"),
                    key: prop("key") == "yes",
                    addrs,
                };
                if found.rooms.get(&s.fullname) != Some(&room) {
                    found.new_rooms.push(room.clone());
                    found.rooms.insert(s.fullname.clone(), room);
                }
            } else if s.ty_domain == SERVER_TYPE {
                let server = Server {
                    name: prop("name"),
                    addrs,
                };
                found.servers.insert(s.fullname.clone(), server);
            }
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            found.rooms.remove(&fullname);
            found.servers.remove(&fullname);
        }
        _ => {}
    }
}

/// The addresses a service can be reached at: IPv4 first, then IPv6 that needs no scope.
fn socket_addrs(ips: impl Iterator<Item = IpAddr>, port: u16) -> Vec<SocketAddr> {
    let mut ips: Vec<IpAddr> = ips
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), ip.is_loopback(), *ip));
    ips.dedup();
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// `name` cut to at most `max` bytes, on a character boundary.
fn truncate(name: &str, max: usize) -> String {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim().to_string()
}

/// `name` as letters, digits and dashes, for a host name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// This host's name (the room's name when it is given none), or `music262`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "music262".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_put_ipv4_first_and_leave_out_link_local_ipv6() {
        let ips = ["fd00::2", "fe80::1", "10.0.0.2", "127.0.0.1"]
            .iter()
            .map(|s| s.parse::<IpAddr>().unwrap());
        let addrs: Vec<String> = socket_addrs(ips, 7000)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addrs, ["10.0.0.2:7000", "127.0.0.1:7000", "[fd00::2]:7000"]);
    }

    #[test]
    fn the_listing_names_each_room_with_its_address_group_and_key() {
        let rooms = [Room {
            name: "Kitchen".into(),
            node_id: "00000000000000aa".into(),
            group: "home".into(),
            transports: "grpc,quic".into(),
            key: true,
            addrs: vec!["10.0.0.2:50052".parse().unwrap()],
        }];
        let text = listing(&rooms, &[]);
        assert!(text.contains("1 room(s) found"), "{text}");
        assert!(
            text.contains("Kitchen")
                && text.contains("10.0.0.2:50052")
                && text.contains("group home, group key"),
            "{text}"
        );
        assert_eq!(
            listing(&[], &[]),
            "no other room found on the local network"
        );
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("Küche", 2), "K");
        assert_eq!(truncate("Living room", 40), "Living room");
        assert_eq!(sanitize("Living room"), "living-room");
    }
}
