//! The client's state directory: its node id, the peers it was linked to and this room's
//! settings (latency, channel, volume), kept in `state.toml` so that a restarted client comes
//! back as itself, to its group, sounding as it did. The file is written by a thread of its
//! own (a temporary file renamed over the old one, so a crash leaves one or the other whole),
//! at most every [`SAVE_EVERY`], never from the driver loop or the audio path.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use player::ChannelMode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sync_core::{DisconnectReason, Event, LeaveReason, LinkCommand, LocalTime, Node, PeerAddr};

use super::config::toml_error;

/// Name of the state file inside the state directory.
pub const FILE: &str = "state.toml";
/// Shortest time between two writes of the state file.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);
/// How often a client with no link offers its remembered peers to the node again (they may
/// have come back since).
pub const REOFFER_ALONE_EVERY: Duration = Duration::from_secs(10);
/// Most peers remembered; the least recently linked go first.
pub const MAX_REMEMBERED: usize = 32;

/// The folder of one client: `given` (`--state-dir`), else `client-<port>` under
/// `<state home>/music262`, one per peer port so that two clients of one host keep apart.
/// `None` when there is no home to put it under.
pub fn instance_dir(given: Option<&Path>, state_home: Option<&Path>, port: u16) -> Option<PathBuf> {
    match given {
        Some(dir) => Some(dir.to_path_buf()),
        None => state_home.map(|home| home.join("music262").join(format!("client-{port}"))),
    }
}

/// What start-up takes from the state directory.
pub struct Restored {
    /// The keeper of the state file, when there is a state directory.
    pub keeper: Option<StateKeeper>,
    /// The state directory, when there is one.
    pub dir: Option<PathBuf>,
    /// This client's node id: `--node-id`, else the one saved, else a new random one.
    pub node_id: u64,
    /// Whether the node id is the one saved.
    pub same_id: bool,
    /// The room's settings saved.
    pub settings: Settings,
}

/// Reads the state directory of the client on `port` (`given` is `--state-dir`): a bad state
/// file, or a `--state-dir` that cannot be made, is an error; a default folder that cannot be
/// made leaves the client without state, with a warning on the log.
pub fn restore(
    given: Option<&Path>,
    state_home: Option<&Path>,
    port: u16,
    node_id: Option<u64>,
) -> Result<Restored, String> {
    let Some(dir) = instance_dir(given, state_home, port) else {
        return Ok(Restored {
            keeper: None,
            dir: None,
            node_id: node_id.unwrap_or_else(|| random_node_id(port)),
            same_id: false,
            settings: Settings::default(),
        });
    };
    let saved = load(&dir)?;
    let saved_id = match &saved.node_id {
        Some(hex) => Some(
            parse_node_id(hex).map_err(|e| format!("{}: node_id {e}", dir.join(FILE).display()))?,
        ),
        None => None,
    };
    let settings = saved.settings.clone();
    let keeper = match StateKeeper::start(&dir, saved) {
        Ok(k) => Some(k),
        Err(e) if given.is_some() => return Err(e),
        Err(e) => {
            tracing::warn!("{e}; this client keeps no state");
            None
        }
    };
    let id = node_id.or(saved_id).unwrap_or_else(|| random_node_id(port));
    Ok(Restored {
        dir: keeper.as_ref().map(|_| dir),
        keeper,
        node_id: id,
        same_id: saved_id == Some(id),
        settings,
    })
}

/// A node id in hex (`0x` allowed).
pub fn parse_node_id(hex: &str) -> Result<u64, String> {
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .map_err(|_| format!("`{hex}` is not hexadecimal"))
}

/// A new node id, for a client without one saved.
fn random_node_id(port: u16) -> u64 {
    // Uniqueness, not secrecy: process, time and port are enough to tell clients apart.
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(player::SystemClock::monotonic_ns().to_le_bytes());
    h.update(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    h.update(port.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// What the state file holds. Every field may be missing (an older or hand-edited file).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Saved {
    /// This client's node id, in hex.
    pub node_id: Option<String>,
    /// The room's settings.
    pub settings: Settings,
    /// The peers it was linked to, most recently linked first.
    pub peers: Vec<Remembered>,
}

/// A room's own settings, restored at start.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// Output latency, ms (`latency`).
    pub latency_ms: Option<f64>,
    /// `left`, `right` or `both` (`channel`).
    pub channel: Option<String>,
    /// Volume, percent (`volume`).
    pub volume: Option<f32>,
}

impl Settings {
    /// The channel mode saved, if it is one.
    pub fn channel_mode(&self) -> Option<ChannelMode> {
        self.channel.as_deref().and_then(|c| c.parse().ok())
    }

    /// The volume saved, 0 to 1, if it is within range.
    pub fn volume_fraction(&self) -> Option<f32> {
        self.volume
            .filter(|v| (0.0..=100.0).contains(v))
            .map(|v| v / 100.0)
    }

    /// The latency saved, if it is within the `latency` command's range.
    pub fn latency(&self) -> Option<f64> {
        self.latency_ms
            .and_then(|ms| super::commands::parse_latency_ms(&ms.to_string()).ok())
    }

    /// The settings of a room playing `channel` at `volume` (0 to 1) with `latency_ns`.
    pub fn of(latency_ns: u64, channel: ChannelMode, volume: f32) -> Settings {
        Settings {
            latency_ms: Some(latency_ns as f64 / 1e6),
            channel: Some(format!("{channel:?}").to_lowercase()),
            volume: Some((volume * 100.0).round()),
        }
    }
}

/// A peer this client was linked to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Remembered {
    /// Its node id, in hex (for the reader; it may have changed when the peer restarted
    /// without a state directory).
    pub node_id: String,
    /// Where it accepts links.
    pub addr: String,
    /// When the link came up, seconds since the Unix epoch.
    pub linked_at: u64,
}

/// Reads the state file of `dir`: nothing saved when it does not exist; an error naming the
/// file and the line when it cannot be read or parsed.
pub fn load(dir: &Path) -> Result<Saved, String> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| toml_error(&path, &text, &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps the state file up to date from the node's events and the room's settings.
pub struct StateKeeper {
    saved: Saved,
    /// What was last handed to the writer.
    written: Option<Saved>,
    /// The writer thread's mailbox; `None` after [`StateKeeper::close`].
    writer: Option<mpsc::Sender<Saved>>,
    last_save: Option<Instant>,
    last_offer: Instant,
}

impl StateKeeper {
    /// A keeper of `saved` in `dir` (created if missing), with its writer thread.
    pub fn start(dir: &Path, saved: Saved) -> Result<StateKeeper, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        let (tx, rx) = mpsc::channel::<Saved>();
        let path = dir.join(FILE);
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(&path, rx))
            .map_err(|e| format!("state writer: {e}"))?;
        Ok(StateKeeper {
            saved,
            written: None,
            writer: Some(tx),
            last_save: None,
            last_offer: Instant::now(),
        })
    }

    /// The remembered peers' addresses, most recently linked first.
    pub fn remembered_addrs(&self) -> Vec<PeerAddr> {
        self.saved
            .peers
            .iter()
            .filter_map(|p| PeerAddr::parse(&p.addr).ok())
            .collect()
    }

    /// Offers the remembered peers to the node, which dials those it wants within its link
    /// cap (the same path as addresses gossiped by a legacy caller). Returns how many it was
    /// offered.
    pub fn offer_remembered(&mut self, node: &mut Node, now: LocalTime) -> usize {
        self.last_offer = Instant::now();
        let addrs = self.remembered_addrs();
        let n = addrs.len();
        if n > 0 {
            let _ = node.handle_link_command(now, LinkCommand::PeerAddresses { addrs });
        }
        n
    }

    /// Follows a node event: a peer linked is remembered; one this client left on purpose
    /// (`leave`) is forgotten. A link lost any other way keeps its peer, to dial after a
    /// restart.
    pub fn on_event(&mut self, e: &Event) {
        if self.writer.is_none() {
            return;
        }
        match e {
            Event::PeerConnected {
                peer,
                listen_addr: Some(addr),
                ..
            } => {
                self.saved
                    .peers
                    .retain(|p| p.addr != *addr && p.node_id != format!("{peer}"));
                self.saved.peers.insert(
                    0,
                    Remembered {
                        node_id: format!("{peer}"),
                        addr: addr.clone(),
                        linked_at: unix_seconds(),
                    },
                );
                self.saved.peers.truncate(MAX_REMEMBERED);
            }
            Event::PeerDisconnected {
                peer: Some(peer),
                reason: DisconnectReason::Local(LeaveReason::Leaving),
                ..
            } => {
                self.saved.peers.retain(|p| p.node_id != format!("{peer}"));
            }
            _ => {}
        }
    }

    /// Called on the driver's tick: saves what changed (at most every [`SAVE_EVERY`]) and,
    /// while the node has no link, offers the remembered peers again every
    /// [`REOFFER_ALONE_EVERY`].
    pub fn tick(&mut self, node: &mut Node, now: LocalTime, settings: Settings) {
        let Some(writer) = &self.writer else { return };
        let at = Instant::now();
        if self
            .last_save
            .is_some_and(|t| at.duration_since(t) < SAVE_EVERY)
        {
            return;
        }
        self.last_save = Some(at);
        self.saved.node_id = Some(format!("{:x}", node.id().0));
        self.saved.settings = settings;
        if self.written.as_ref() != Some(&self.saved) {
            let _ = writer.send(self.saved.clone());
            self.written = Some(self.saved.clone());
        }
        if node.peer_count() == 0 && at.duration_since(self.last_offer) >= REOFFER_ALONE_EVERY {
            self.offer_remembered(node, now);
        }
    }

    /// Writes what is held now and stops following events: the links that close as the
    /// client shuts down are not forgotten.
    pub fn close(&mut self, node: &Node, settings: Settings) {
        if let Some(writer) = self.writer.take() {
            self.saved.node_id = Some(format!("{:x}", node.id().0));
            self.saved.settings = settings;
            if self.written.as_ref() != Some(&self.saved) {
                let _ = writer.send(self.saved.clone());
            }
        }
    }
}

/// The writer thread: writes each state received (the latest when several wait), until the
/// keeper is gone.
fn write_loop(path: &Path, rx: mpsc::Receiver<Saved>) {
    let mut warned = false;
    while let Ok(mut saved) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            saved = newer;
        }
        match write_atomically(path, &saved) {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                tracing::warn!("cannot save the state file {}: {e}", path.display());
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// Writes `saved` to `path` through a temporary file beside it, renamed over it.
pub fn write_atomically(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let text = toml::to_string(saved).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{Config, LinkId, NodeId};

    fn node() -> Node {
        Node::new(Config::new(NodeId(0x5)), 5, LocalTime(0))
    }

    fn connected(link: u64, peer: u64, addr: &str) -> Event {
        Event::PeerConnected {
            link: LinkId(link),
            peer: NodeId(peer),
            listen_addr: Some(addr.into()),
        }
    }

    #[test]
    fn the_instance_folder_is_the_given_one_or_one_per_port_under_the_state_home() {
        let home = Path::new("/h/.local/state");
        assert_eq!(
            instance_dir(None, Some(home), 50052),
            Some(PathBuf::from("/h/.local/state/music262/client-50052"))
        );
        assert_eq!(
            instance_dir(Some(Path::new("/x")), Some(home), 50052),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(instance_dir(None, None, 50052), None);
    }

    #[test]
    fn a_missing_file_is_nothing_saved_and_a_bad_one_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Saved::default());
        std::fs::write(dir.path().join(FILE), "node_id = \"ab\"\npeers = 7\n").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.contains("state.toml:2:"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn linked_peers_are_remembered_newest_first_and_a_peer_left_on_purpose_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut keeper = StateKeeper::start(dir.path(), Saved::default()).unwrap();
        keeper.on_event(&connected(1, 0xa, "10.0.0.1:50052"));
        keeper.on_event(&connected(2, 0xb, "10.0.0.2:50052"));
        // A restarted peer on the same address replaces its former self.
        keeper.on_event(&connected(3, 0xc, "10.0.0.1:50052"));
        let addrs: Vec<String> = keeper
            .remembered_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addrs, ["10.0.0.1:50052", "10.0.0.2:50052"]);
        keeper.on_event(&Event::PeerDisconnected {
            link: LinkId(2),
            peer: Some(NodeId(0xb)),
            reason: DisconnectReason::Timeout,
        });
        assert_eq!(
            keeper.remembered_addrs().len(),
            2,
            "a lost link keeps its peer"
        );
        keeper.on_event(&Event::PeerDisconnected {
            link: LinkId(2),
            peer: Some(NodeId(0xb)),
            reason: DisconnectReason::Local(LeaveReason::Leaving),
        });
        let addrs: Vec<String> = keeper
            .remembered_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addrs, ["10.0.0.1:50052"]);
    }

    #[test]
    fn the_state_is_written_to_its_file_and_read_back_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut keeper = StateKeeper::start(dir.path(), Saved::default()).unwrap();
        keeper.on_event(&connected(1, 0xa, "10.0.0.1:50052"));
        let mut n = node();
        keeper.tick(
            &mut n,
            LocalTime(0),
            Settings::of(180_000_000, ChannelMode::Left, 0.5),
        );
        keeper.close(&n, Settings::of(180_000_000, ChannelMode::Left, 0.5));
        // Links closing at shutdown are not forgotten.
        keeper.on_event(&Event::PeerDisconnected {
            link: LinkId(1),
            peer: Some(NodeId(0xa)),
            reason: DisconnectReason::Local(LeaveReason::Leaving),
        });
        drop(keeper);
        let deadline = Instant::now() + Duration::from_secs(5);
        let saved = loop {
            let s = load(dir.path()).unwrap();
            if s.node_id.is_some() || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(saved.node_id.as_deref(), Some("5"));
        assert_eq!(saved.settings.latency(), Some(180.0));
        assert_eq!(saved.settings.channel_mode(), Some(ChannelMode::Left));
        assert_eq!(saved.settings.volume_fraction(), Some(0.5));
        assert_eq!(saved.peers.len(), 1);
        assert!(!dir.path().join("state.toml.tmp").exists());
    }

    #[test]
    fn the_node_id_is_the_given_one_else_the_saved_one_else_new_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = restore(Some(dir.path()), None, 1, None).unwrap();
        assert!(!first.same_id);
        write_atomically(
            &dir.path().join(FILE),
            &Saved {
                node_id: Some(format!("{:x}", first.node_id)),
                ..Saved::default()
            },
        )
        .unwrap();
        let again = restore(Some(dir.path()), None, 1, None).unwrap();
        assert_eq!((again.node_id, again.same_id), (first.node_id, true));
        let given = restore(Some(dir.path()), None, 1, Some(0xabc)).unwrap();
        assert_eq!((given.node_id, given.same_id), (0xabc, false));
        let none = restore(None, None, 1, None).unwrap();
        assert!(none.keeper.is_none() && none.dir.is_none());
    }

    #[test]
    fn settings_out_of_range_are_not_restored() {
        let s = Settings {
            latency_ms: Some(99_999.0),
            channel: Some("middle".into()),
            volume: Some(150.0),
        };
        assert_eq!(
            (s.latency(), s.channel_mode(), s.volume_fraction()),
            (None, None, None)
        );
    }
}
