//! Text the client prints: `status`, the `connections` table (modelled on
//! `chronyc sources`), `peers`, one-line descriptions of commands, and what the node's events
//! say on the console and in the log.

use music262_proto::audio_service::PeerListResponse;
use player::Player;
use sync_core::time::format_nanos;
use sync_core::{
    BadInput, DisconnectReason, Event, GroupState, GroupTime, LinkId, LinkStatus, LoadWait,
    LocalTime, Mode, Node, NodeId, PeerRole, SongRef, Timeline,
};

use super::peers::Peers;

/// `m:ss.mmm` for a duration in milliseconds.
pub fn clock_time(ms: u64) -> String {
    format!("{}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000)
}

/// `m:ss.mmm` for a frame of `song`.
pub fn frame_time(song: &SongRef, frame: f64) -> String {
    clock_time((frame.max(0.0) * 1000.0 / song.sample_rate as f64) as u64)
}

/// One line saying what a state asks for.
pub fn describe_state(s: &GroupState) -> String {
    let name = s.song.as_ref().map_or("(no song)", |x| x.name.as_str());
    match (s.mode, &s.song) {
        (Mode::Stopped { .. }, Some(_)) => format!("stop ({name})"),
        (Mode::Stopped { .. }, None) => "stop".to_string(),
        (Mode::Loading { start_frame, .. }, Some(song)) => {
            format!(
                "play {name} from {} (loading)",
                frame_time(song, start_frame as f64)
            )
        }
        (Mode::Paused { frame, .. }, Some(song)) => {
            format!(
                "pause {name} at {} (frame {frame})",
                frame_time(song, frame as f64)
            )
        }
        (Mode::Playing { frame, .. }, Some(song)) => {
            format!("play {name} from {}", frame_time(song, frame as f64))
        }
        (m, None) => format!("{m:?}"),
    }
}

/// How late a received state may be and still be told from its own anchor: later than that,
/// a peer joining a group that plays is told where the group is now.
const TOLD_FROM_ANCHOR: i64 = 1_000_000_000;

/// One line saying what a state received at `now` means here: as [`describe_state`], but a
/// playing timeline that started well before now (a late joiner's, a loading state past its
/// deadline) is told where it stands now.
pub fn describe_heard(s: &GroupState, node: &Node, now: LocalTime) -> String {
    let anchor = match s.mode {
        Mode::Playing { frame, at } => Some((frame, at)),
        Mode::Loading {
            start_frame,
            deadline,
        } if node.local_time(deadline) <= now => Some((start_frame, deadline)),
        _ => None,
    };
    match (anchor, &s.song) {
        (Some((frame, at)), Some(song)) => {
            let since = now.since(node.local_time(at));
            let frame = if since > TOLD_FROM_ANCHOR {
                frame as f64 + song.nanos_to_frames(since as f64)
            } else {
                frame as f64
            };
            format!("play {} from {}", song.name, frame_time(song, frame))
        }
        _ => describe_state(s),
    }
}

/// A group command typed at this client, for the line that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed {
    /// `play`.
    Play,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `seek`.
    Seek,
    /// `stop`.
    Stop,
}

/// The line answering a group command typed here, read from the state the node holds after it:
/// what happens, on how many rooms (this one and its linked peers), and in how long, e.g.
/// `pause at 0:09.253 on 3 rooms in 20 ms`.
pub fn command_effect(typed: Typed, node: &Node, now: LocalTime) -> String {
    let state = node.state();
    let rooms = node.peer_count() + 1;
    let on = match rooms {
        1 => "on this room only".to_string(),
        n => format!("on {n} rooms"),
    };
    // A state can only take effect now or later; never print a negative wait.
    let wait_ms = |at: GroupTime| node.local_time(at).since(now).max(0) as f64 / 1e6;
    let Some(song) = &state.song else {
        return format!("{} {on}", describe_state(state));
    };
    let name = &song.name;
    let time = |frame: u64| frame_time(song, frame as f64);
    match (typed, state.mode) {
        (_, Mode::Stopped { at }) => format!("stop {on} in {:.0} ms", wait_ms(at)),
        (
            _,
            Mode::Loading {
                start_frame,
                deadline,
            },
        ) => format!(
            "play {name} from {} {on} once every room has loaded it (at the latest in {:.1} s)",
            time(start_frame),
            wait_ms(deadline) / 1e3
        ),
        (Typed::Seek, Mode::Paused { frame, at }) => format!(
            "seek to {} (paused) {on} in {:.0} ms",
            time(frame),
            wait_ms(at)
        ),
        (_, Mode::Paused { frame, at }) => {
            format!("pause at {} {on} in {:.0} ms", time(frame), wait_ms(at))
        }
        (Typed::Seek, Mode::Playing { frame, at }) => {
            format!("seek to {} {on} in {:.0} ms", time(frame), wait_ms(at))
        }
        (Typed::Resume, Mode::Playing { frame, at }) => {
            format!("resume from {} {on} in {:.0} ms", time(frame), wait_ms(at))
        }
        (_, Mode::Playing { frame, at }) => format!(
            "play {name} from {} {on} in {:.0} ms",
            time(frame),
            wait_ms(at)
        ),
    }
}

/// The clients registered with the server.
pub fn peers(list: &PeerListResponse, me: &str) -> String {
    if list.client_ips.is_empty() {
        return "no client is registered with the server".to_string();
    }
    let mut out = String::from("clients registered with the server (join any of them):");
    for a in &list.client_ips {
        out.push_str(&format!(
            "\n  {a}{}",
            if a == me { "  (this client)" } else { "" }
        ));
    }
    out
}

/// A link's role in clock sync, as the `connections` table and the web page name it.
pub fn role(r: PeerRole) -> &'static str {
    match r {
        PeerRole::Parent => "parent",
        PeerRole::Child => "child",
        PeerRole::Peer => "peer",
        PeerRole::Connecting => "connect",
    }
}

/// The `connections` table: one row per link; `via` names the transport carrying a link.
pub fn connections(
    links: &[LinkStatus],
    now: LocalTime,
    via: impl Fn(LinkId) -> &'static str,
) -> String {
    let _ = now;
    if links.is_empty() {
        return "no connections; use `join <ip:port>` (see `peers`)".to_string();
    }
    let addr = |l: &LinkStatus| {
        l.listen_addr
            .clone()
            .unwrap_or_else(|| l.remote_addr.clone())
    };
    // Columns as wide as their longest entry (an IPv6 address, a long room name): aligned.
    let peer_w = links
        .iter()
        .map(|l| addr(l).chars().count())
        .fold(22, usize::max);
    let room_w = links
        .iter()
        .filter_map(|l| l.name.as_ref().map(|n| n.chars().count()))
        .fold(12, usize::max);
    let mut out = format!(
        "{:<peer_w$} {:<room_w$} {:<16} {:<5} {:<7} {:>3} {:>9} {:>14} {:>10} {:>9} {:>6}",
        "Peer", "Room", "Node id", "Via", "Role", "Str", "RTT", "Offset", "Drift", "Jitter", "Last"
    );
    for l in links {
        out.push_str(&format!(
            "\n{:<peer_w$} {:<room_w$} {:<16} {:<5} {:<7} {:>3} {:>9} {:>14} {:>10} {:>9} {:>6}{}",
            addr(l),
            l.name.as_deref().unwrap_or("-"),
            l.peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
            via(l.link),
            role(l.role),
            l.stratum.map_or_else(|| "-".to_string(), |s| s.to_string()),
            l.rtt.map_or_else(|| "-".to_string(), format_nanos),
            l.offset.map_or_else(
                || "-".to_string(),
                |o| format!(
                    "{}{}",
                    if o >= 0.0 { "+" } else { "" },
                    format_nanos(o.round() as i64)
                )
            ),
            l.drift_ppm
                .map_or_else(|| "-".to_string(), |d| format!("{d:+.2}ppm")),
            l.jitter
                .map_or_else(|| "-".to_string(), |j| format_nanos(j.round() as i64)),
            format!("{:.1}s", l.last_contact as f64 / 1e9),
            if l.suspect { "  (not answering)" } else { "" },
        ));
    }
    out
}

/// The group's song, what it does (`playing`, `paused`, `loading`, `finished`, `stopped`, or
/// `silent` where the group plays a song this room does not hold) and
/// the frame being heard (the player's own report while playing), or `None` without a song.
pub fn heard_state<'a>(
    node: &'a Node,
    now: LocalTime,
    player: &Player,
) -> Option<(&'a SongRef, &'static str, f64)> {
    let song = node.state().song.as_ref()?;
    let heard = player.position().map(|p| p.frame);
    let (what, frame) = match node.timeline_at(now) {
        Timeline::Loading => ("loading", 0.0),
        Timeline::Stopped => ("stopped", 0.0),
        // The group's timeline runs on, but nothing of it is heard without the song.
        Timeline::Playing { frame } if !node.has_song() => ("silent", frame),
        Timeline::Playing { frame } => ("playing", heard.unwrap_or(frame)),
        Timeline::Paused { frame } => ("paused", frame as f64),
        Timeline::Finished => ("finished", song.frames as f64),
    };
    Some((song, what, frame))
}

/// The room `id` as the console names it: its room name (`Kitchen`) when that tells it apart,
/// else the address its link names (`127.0.0.1:50062`), else `node <id>`.
pub fn room(node: &Node, id: NodeId) -> String {
    if let Some(name) = node.unique_name_of(id) {
        return name.to_string();
    }
    let linked = node.links().into_iter().find(|l| l.peer == Some(id));
    let member = || node.members().into_iter().find(|m| m.1 == id).map(|m| m.0);
    linked
        .map(|l| l.listen_addr.unwrap_or(l.remote_addr))
        .or_else(member)
        .unwrap_or_else(|| format!("node {id}"))
}

/// The rooms of `ids`, each named by [`room`].
pub fn rooms(node: &Node, ids: &[NodeId]) -> String {
    let name = |id: &NodeId| room(node, *id);
    ids.iter().map(name).collect::<Vec<_>>().join(", ")
}

/// For whom a loading state this room started waits, and how long:
/// `waiting for 127.0.0.1:50062 to load (1.2 s of at most 3.0 s)`.
pub fn load_wait(node: &Node, w: &LoadWait, now: LocalTime) -> String {
    let mut whom = rooms(node, &w.waiting_for);
    if w.loading_here {
        whom = if whom.is_empty() {
            "this room".to_string()
        } else {
            format!("this room and {whom}")
        };
    }
    format!(
        "waiting for {whom} to load ({:.1} s of at most {:.1} s)",
        now.since(w.since).max(0) as f64 / 1e9,
        w.deadline.since(w.since).max(0) as f64 / 1e9
    )
}

/// The line for a group that started without rooms that had not loaded its song in time.
pub fn started_without(node: &Node, ids: &[NodeId]) -> String {
    let song = node
        .state()
        .song
        .as_ref()
        .map_or("the song", |s| s.name.as_str());
    format!(
        "playing without {}: not loaded in time; it joins in sync when it has {song}",
        rooms(node, ids)
    )
}

/// A node id with its room name when known: `00000000000000aa (Kitchen)`.
fn named(node: &Node, id: NodeId) -> String {
    match node.name_of(id) {
        Some(name) => format!("{id} ({name})"),
        None => id.to_string(),
    }
}

/// What `status` needs.
pub struct StatusInput<'a> {
    /// The node.
    pub node: &'a Node,
    /// Now.
    pub now: LocalTime,
    /// The player.
    pub player: &'a Player,
    /// Server address.
    pub server: &'a str,
    /// Whether the server answered last time.
    pub server_up: Option<bool>,
    /// This client's joinable address.
    pub advertised: &'a str,
    /// The song being downloaded.
    pub loading: Option<&'a SongRef>,
    /// The last song that could not be loaded and why.
    pub failed: Option<(&'a SongRef, &'a str)>,
}

/// The `status` text.
pub fn status(s: &StatusInput<'_>) -> String {
    let mut out = String::new();
    match heard_state(s.node, s.now, s.player) {
        None => out.push_str("state: stopped, no song"),
        Some((song, what, frame)) => {
            let total = clock_time(song.frames * 1000 / u64::from(song.sample_rate.max(1)));
            out.push_str(&format!(
                "state: {what}  song: {}  position {} / {total} (frame {:.0})",
                song.name,
                frame_time(song, frame),
                frame
            ));
        }
    }
    if let Some(w) = s.node.load_wait(s.now) {
        out.push_str(&format!("\n{}", load_wait(s.node, &w, s.now)));
        if !w.not_waited.is_empty() {
            out.push_str(&format!(
                "\nnot waiting for {} (it did not load the last song in time)",
                rooms(s.node, &w.not_waited)
            ));
        }
    }
    if let Some(l) = s.loading {
        out.push_str(&format!("\nloading {} from the server", l.name));
    } else if let Some((song, why)) = s.failed {
        out.push_str(&format!("\nthis room cannot play {}: {why}", song.name));
    }
    let sync = s.node.sync_status();
    let (rate, error) = s.node.correction_status();
    let reference = if sync.root == sync.node_id {
        "this client is the clock reference".to_string()
    } else {
        format!(
            "reference {} at stratum {}, following {}",
            named(s.node, sync.root),
            sync.stratum,
            sync.parent.map_or("-".to_string(), |p| named(s.node, p))
        )
    };
    let linked: Vec<NodeId> = s.node.links().iter().filter_map(|l| l.peer).collect();
    let peers = match linked.len() {
        0 => "0 connected".to_string(),
        n => format!("{n} connected ({})", rooms(s.node, &linked)),
    };
    out.push_str(&format!(
        "\nsync: {reference}; command lead {}\ndrift correction: {:+.1} ppm, last error {}",
        format_nanos(sync.lead),
        rate,
        error.map_or("-".to_string(), format_nanos)
    ));
    out.push_str(&format!(
        "\npeers: {peers}; joinable at {}\nserver: {} ({})\noutput: {} at {} Hz, node {}",
        s.advertised,
        s.server,
        match s.server_up {
            Some(true) => "reachable",
            Some(false) => "unreachable",
            None => "not yet contacted",
        },
        s.player.sink_kind(),
        s.player.sink_rate(),
        named(s.node, sync.node_id)
    ));
    out
}

/// What the console says about a node event.
#[derive(Debug, PartialEq, Eq)]
pub enum Told {
    /// Nothing (the log has it).
    Nothing,
    /// A line for the console.
    Say(String),
}

/// A node event: logged, and turned into what the console says. `peers` names the links (the
/// names before the event); `now` dates a new state's effect.
pub fn event(e: &Event, peers: &Peers, node: &Node, now: LocalTime) -> Told {
    match e {
        Event::PeerConnected {
            link,
            peer,
            listen_addr,
        } => {
            let name = listen_addr.clone().unwrap_or_else(|| peers.name(*link));
            tracing::info!(peer = %name, node = %peer, "peer connected");
            Told::Say(format!("connected to peer {name} (node {peer})"))
        }
        Event::PeerDisconnected { link, peer, reason } => {
            let name = peers.name(*link);
            let why = match reason {
                DisconnectReason::Closed => "connection closed".to_string(),
                DisconnectReason::PeerLeft(r) => format!("it left ({r:?})").to_lowercase(),
                DisconnectReason::Local(r) => format!("closed here ({r:?})").to_lowercase(),
                DisconnectReason::Timeout => "it stopped answering".to_string(),
                DisconnectReason::HandshakeTimeout => "no handshake".to_string(),
            };
            tracing::info!(peer = %name, node = ?peer, %why, "peer disconnected");
            match peer {
                Some(_) => Told::Say(format!("peer {name} disconnected: {why}")),
                None => Told::Nothing,
            }
        }
        Event::PeerSuspect { link, peer } => {
            let name = peers.name(*link);
            tracing::warn!(peer = %name, node = %peer, "peer silent, suspect");
            Told::Say(format!("peer {name} is not answering"))
        }
        Event::StateAccepted {
            state,
            from,
            late_by,
        } => {
            let what = describe_heard(state, node, now);
            // A loading state has no instant of its own yet: it plays at the latest at its
            // deadline. A late state took effect already (`late_ms` says by how much).
            let at = match state.mode {
                Mode::Loading { deadline, .. } => deadline,
                _ => state.effective_at(),
            };
            let in_ms = node.local_time(at).since(now).max(0) as f64 / 1e6;
            // The queue's next song, which every room derives alone at a song's end (the
            // state revised by node 0): nobody typed it.
            let advanced = state.version.revision > 0 && state.version.revised_by == NodeId(0);
            if advanced {
                tracing::info!(version = %state.version, %what, "the queue moved on");
                return Told::Say(format!("{what} (next in the queue)"));
            }
            match from {
                Some(link) => {
                    let name = peers.name(*link);
                    // Said of the room where the command was typed, not of the neighbour
                    // that relayed it.
                    let origin = state.version.origin;
                    let by = if origin == node.id() {
                        "this room".to_string()
                    } else {
                        room(node, origin)
                    };
                    tracing::info!(peer = %name, version = %state.version, %by, %what, late_ms = late_by / 1_000_000, in_ms, "command received");
                    Told::Say(format!("{what} (by {by})"))
                }
                None => {
                    // The command's own answer said it (`command_effect`); the log keeps it.
                    tracing::info!(version = %state.version, %what, in_ms, "command issued here");
                    Told::Nothing
                }
            }
        }
        Event::StateEffective { version } => {
            tracing::info!(%version, "command executed");
            Told::Nothing
        }
        Event::SongFinished { song } => {
            tracing::info!(song = %song.name, heard = node.has_song(), "song finished");
            // A song this room never held did not finish here.
            if node.has_song() {
                Told::Say(format!("{} finished", song.name))
            } else {
                Told::Nothing
            }
        }
        Event::LoadFailed { song, reason } => {
            tracing::warn!(song = %song.name, %reason, "load failed");
            Told::Say(format!("cannot play {}: {reason}", song.name))
        }
        Event::ReferenceChanged {
            root,
            stratum,
            parent,
        } => {
            tracing::info!(%root, stratum, ?parent, "clock reference");
            Told::Nothing
        }
        Event::GroupTimeStepped { by } => {
            tracing::info!(
                by_ms = *by as f64 / 1e6,
                "group time stepped (joined another group's clock)"
            );
            Told::Nothing
        }
        Event::BadMessage { link, reason } => {
            let name = peers.name(*link);
            tracing::warn!(peer = %name, ?reason, "bad message dropped");
            match reason {
                BadInput::SelfLink => {
                    Told::Say(format!("{name} is this client itself; link closed"))
                }
                BadInput::ProtocolVersion(v) => Told::Say(format!(
                    "peer {name} speaks protocol version {v}; link refused"
                )),
                _ => Told::Nothing,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{Config, GroupTime, NodeId, StateVersion};

    #[test]
    fn a_link_lost_before_its_handshake_is_logged_but_not_said() {
        let node = Node::new(Config::new(NodeId(1)), 1, LocalTime(0));
        let peers = Peers::default();
        let gone = |peer| Event::PeerDisconnected {
            link: LinkId(7),
            peer,
            reason: DisconnectReason::Timeout,
        };
        assert_eq!(
            event(&gone(None), &peers, &node, LocalTime(0)),
            Told::Nothing
        );
        assert_eq!(
            event(&gone(Some(NodeId(2))), &peers, &node, LocalTime(0)),
            Told::Say("peer link 7 disconnected: it stopped answering".to_string())
        );
    }

    #[test]
    fn a_command_issued_here_is_left_to_its_answer_and_one_from_a_peer_is_said() {
        let node = Node::new(Config::new(NodeId(1)), 1, LocalTime(0));
        let peers = Peers::default();
        let state = GroupState {
            version: StateVersion::default(),
            song: None,
            mode: Mode::Stopped { at: GroupTime(0) },
            timebase: 1,
            queue: Default::default(),
        };
        let accepted = |from| Event::StateAccepted {
            state: state.clone(),
            from,
            late_by: 0,
        };
        assert_eq!(
            event(&accepted(None), &peers, &node, LocalTime(0)),
            Told::Nothing
        );
        assert_eq!(
            event(&accepted(Some(LinkId(3))), &peers, &node, LocalTime(0)),
            Told::Say("stop (by node 0000000000000000)".to_string())
        );
    }

    #[test]
    fn the_queues_next_song_is_said_as_such_wherever_it_was_derived() {
        let node = Node::new(Config::new(NodeId(1)), 1, LocalTime(0));
        let peers = Peers::default();
        let state = GroupState {
            version: StateVersion::new(4, NodeId(7)).revised(NodeId(0)),
            song: None,
            mode: Mode::Stopped { at: GroupTime(0) },
            timebase: 1,
            queue: Default::default(),
        };
        for from in [None, Some(LinkId(3))] {
            let e = Event::StateAccepted {
                state: state.clone(),
                from,
                late_by: 0,
            };
            assert_eq!(
                event(&e, &peers, &node, LocalTime(0)),
                Told::Say("stop (next in the queue)".to_string())
            );
        }
    }

    #[test]
    fn commands_read_as_what_they_do() {
        let song = SongRef {
            name: "a.wav".into(),
            content_hash: String::new(),
            sample_rate: 48_000,
            frames: 48_000 * 100,
        };
        let s = |mode| GroupState {
            version: StateVersion::default(),
            song: Some(song.clone()),
            mode,
            timebase: 1,
            queue: Default::default(),
        };
        assert_eq!(
            describe_state(&s(Mode::Paused {
                frame: 48_000 * 83 + 24_000,
                at: GroupTime(0)
            })),
            "pause a.wav at 1:23.500 (frame 4008000)"
        );
        assert_eq!(
            describe_state(&s(Mode::Playing {
                frame: 0,
                at: GroupTime(0)
            })),
            "play a.wav from 0:00.000"
        );
        assert_eq!(
            describe_state(&s(Mode::Stopped { at: GroupTime(0) })),
            "stop (a.wav)"
        );
    }

    #[test]
    fn an_empty_connection_table_says_what_to_do() {
        assert_eq!(
            connections(&[], LocalTime(0), |_| "grpc"),
            "no connections; use `join <ip:port>` (see `peers`)"
        );
    }
}
