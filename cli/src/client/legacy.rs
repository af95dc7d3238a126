//! The legacy `ClientHandler` calls (an original client, or a test, driving this one): music
//! commands translated into group commands, the position query answered from the player and
//! the node, gossip and exit turned into link commands.

use std::net::SocketAddr;

use music262_proto::audio_service::SongInfo;
use music262_proto::client::{GetPositionResponse, PlaybackState as WireState};
use music262_proto::legacy::{self, LegacyAction, LegacyCommand, Position, WavLayout};
use player::{PlaybackState, Player};
use sync_core::{Command, CommandError, LinkStatus, LocalTime, Nanos, Node, SongRef, Timeline};
use tokio::sync::oneshot;
use tonic::Status;
use transport_grpc::LegacyCall;

use super::commands;
use super::server_link::{Pending, song_ref};

/// What the legacy calls read besides the node.
pub struct View<'a> {
    /// The playlist as last fetched.
    pub playlist: &'a [SongInfo],
    /// The player, for the position heard.
    pub player: &'a Player,
    /// The fetcher's generation for the song installed in the player.
    pub generation: Option<u64>,
    /// Whether a song is downloading.
    pub loading: bool,
}

/// Answers legacy calls.
pub struct Legacy {
    /// This client's own addresses, left out of gossip it receives.
    own_addrs: Vec<String>,
}

/// The reply channel of a legacy music command.
type CommandReply = oneshot::Sender<Result<(), Status>>;

fn command_error_status(e: &CommandError) -> Status {
    match e {
        CommandError::OutOfRange { .. }
        | CommandError::TooFarAhead(_)
        | CommandError::InvalidSong(_) => Status::invalid_argument(e.to_string()),
        CommandError::UnknownPeer(_) => Status::not_found(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

/// The links a legacy `Exit` closes: those to the listen address or node id the caller gave,
/// or, when it gave neither that matches, the links from the caller's own address. Returned as
/// the peers `Command::Leave` names (node id, or address before the handshake).
pub fn exit_targets(
    links: &[LinkStatus],
    listen_addr: &str,
    node_id: u64,
    from: Option<SocketAddr>,
) -> Vec<String> {
    let target = |l: &LinkStatus| l.peer.map_or(l.remote_addr.clone(), |p| p.to_string());
    let targets: Vec<String> = links
        .iter()
        .filter(|l| {
            (!listen_addr.is_empty()
                && (l.listen_addr.as_deref() == Some(listen_addr) || l.remote_addr == listen_addr))
                || (node_id != 0 && l.peer.is_some_and(|p| p.0 == node_id))
        })
        .map(target)
        .collect();
    match from {
        // A caller that gave nothing: the links from its address.
        Some(from) if targets.is_empty() => {
            let from = from.to_string();
            links
                .iter()
                .filter(|l| l.remote_addr == from)
                .map(target)
                .collect()
        }
        _ => targets,
    }
}

/// A legacy `load` at a position: the song is loaded, then held at that frame, as two group
/// commands (two state versions). A stopped song is cued at frame 0, so frame 0 needs no seek.
pub fn load_at_position(
    node: &mut Node,
    now: LocalTime,
    song: SongRef,
    frame: Option<u64>,
    delay: Option<Nanos>,
) -> Result<(), CommandError> {
    node.handle_command(now, Command::Load { song }, delay)?;
    match frame.filter(|f| *f > 0) {
        Some(frame) => node.handle_command(now, Command::Seek { frame }, delay),
        None => Ok(()),
    }
}

impl Legacy {
    /// Leaves `own_addrs` out of the gossip received.
    pub fn new(own_addrs: Vec<String>) -> Self {
        Legacy { own_addrs }
    }

    /// Answers one call. Returns the command to run again once the playlist is fetched, when
    /// it names a song not yet listed.
    pub fn on_call(
        &self,
        call: LegacyCall,
        node: &mut Node,
        now: LocalTime,
        view: &View<'_>,
    ) -> Option<Pending> {
        match call {
            LegacyCall::Command {
                request,
                from,
                reply,
            } => {
                tracing::info!(from = ?from, action = %request.action, "legacy command received");
                match legacy::parse_music_request(&request) {
                    Err(e) => {
                        tracing::warn!(from = ?from, error = %e, "legacy command refused");
                        let _ = reply.send(Err(e.into()));
                        None
                    }
                    Ok(cmd) => self.run(cmd, reply, true, node, now, view.playlist),
                }
            }
            LegacyCall::Position { reply } => {
                let _ = reply.send(position_response(node, now, view));
                None
            }
            LegacyCall::Gossip { peers, from, reply } => {
                tracing::info!(from = ?from, count = peers.len(), "legacy gossip received");
                let peers: Vec<String> = peers
                    .into_iter()
                    .filter(|a| commands::check_addr(a).is_ok() && !self.own_addrs.contains(a))
                    .collect();
                let r = node
                    .handle_command(now, Command::PeerAddresses { addrs: peers }, None)
                    .map_err(|e| command_error_status(&e));
                let _ = reply.send(r);
                None
            }
            LegacyCall::Exit {
                request,
                from,
                reply,
            } => {
                tracing::info!(from = ?from, addr = %request.listen_addr, "legacy exit received");
                for peer in exit_targets(&node.links(), &request.listen_addr, request.node_id, from)
                {
                    let _ = node.handle_command(now, Command::Leave { peer }, None);
                }
                let _ = reply.send(());
                None
            }
        }
    }

    /// Runs a legacy command. With `may_fetch`, a song not in `playlist` is looked for again
    /// once the playlist is fetched: the command is returned, to run then.
    pub fn run(
        &self,
        cmd: LegacyCommand,
        reply: CommandReply,
        may_fetch: bool,
        node: &mut Node,
        now: LocalTime,
        playlist: &[SongInfo],
    ) -> Option<Pending> {
        let resolved: Option<Result<SongInfo, Status>> = cmd.song.as_ref().map(|sel| {
            let names: Vec<&str> = playlist.iter().map(|s| s.name.as_str()).collect();
            sel.resolve(&names)
                .map(|i| playlist[i].clone())
                .map_err(Status::from)
        });
        if may_fetch && resolved.as_ref().is_some_and(|r| r.is_err()) {
            return Some(Pending::Legacy(cmd, reply));
        }
        let song_info = match resolved {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                let _ = reply.send(Err(e));
                return None;
            }
            None => None,
        };
        let (command, frame) = match plan(&cmd, song_info, node, playlist) {
            Ok(planned) => planned,
            Err(e) => {
                let _ = reply.send(Err(e));
                return None;
            }
        };
        let delay = (cmd.wait_ms > 0).then(|| (cmd.wait_ms as i64).saturating_mul(1_000_000));
        let r = match command {
            Command::Load { song } => load_at_position(node, now, song, frame, delay),
            other => node.handle_command(now, other, delay),
        };
        let r = match r {
            // An original client may send `stop` twice; the second has nothing to change and is
            // not an error for it.
            Err(CommandError::AlreadyStopped) => Ok(()),
            other => other.map_err(|e| command_error_status(&e)),
        };
        if let Err(e) = &r {
            tracing::warn!(error = %e.message(), "legacy command not applied");
        }
        let _ = reply.send(r);
        None
    }
}

/// The group command a legacy command asks for, and the frame it names (play, load and seek
/// take a position, counted in the song the command names, or the current one). An error is
/// the caller's answer (the node never sees the command).
fn plan(
    cmd: &LegacyCommand,
    song_info: Option<SongInfo>,
    node: &Node,
    playlist: &[SongInfo],
) -> Result<(Command, Option<u64>), Status> {
    let current = song_info.clone().or_else(|| {
        let s = node.state().song.as_ref()?;
        playlist
            .iter()
            .find(|i| i.name == s.name)
            .cloned()
            .or_else(|| {
                Some(SongInfo {
                    name: s.name.clone(),
                    sample_rate: s.sample_rate,
                    frames: s.frames,
                    ..SongInfo::default()
                })
            })
    });
    let takes_position = matches!(
        cmd.action,
        LegacyAction::Play | LegacyAction::Load | LegacyAction::Seek
    );
    let frame = match (&current, takes_position) {
        (_, false) => None,
        (None, true) => {
            if cmd.action == LegacyAction::Seek {
                return Err(Status::failed_precondition("no song to position in"));
            }
            None
        }
        (Some(info), true) => {
            let layout = WavLayout {
                data_offset: info.data_offset,
                block_align: info.block_align,
                sample_rate: info.sample_rate,
            };
            match cmd.position {
                Position::ByteOffset(b) if b > 0 && info.block_align == 0 => {
                    return Err(Status::failed_precondition(
                        "a byte position needs the song's layout, which this server did not list",
                    ));
                }
                p => Some(p.to_frame(&layout).map_err(Status::from)?),
            }
        }
    };
    let command = match cmd.action {
        LegacyAction::Play => Command::Play {
            song: song_info.as_ref().map(song_ref),
            frame: frame.unwrap_or(0),
        },
        LegacyAction::Pause => Command::Pause,
        LegacyAction::Resume => Command::Resume,
        LegacyAction::Stop => Command::Stop,
        LegacyAction::Load => match &song_info {
            Some(s) => {
                if let Some(f) = frame.filter(|f| *f >= s.frames && s.frames > 0) {
                    return Err(Status::invalid_argument(format!(
                        "position {f} is beyond the end of the song ({} frames)",
                        s.frames
                    )));
                }
                Command::Load { song: song_ref(s) }
            }
            None => return Err(Status::invalid_argument("load needs a song")),
        },
        LegacyAction::Seek => Command::Seek {
            frame: frame.unwrap_or(0),
        },
    };
    Ok((command, frame))
}

/// The answer to the legacy position query: the position heard when the player plays the
/// node's song, else the group's timeline now.
fn position_response(node: &Node, now: LocalTime, view: &View<'_>) -> GetPositionResponse {
    let state = node.state();
    let timeline = node.timeline_at(now);
    let pos = view.player.position();
    let song = state.song.clone();
    let info = song.as_ref().and_then(|s| {
        view.playlist
            .iter()
            .find(|i| i.name == s.name && i.content_hash == s.content_hash)
    });
    let heard = pos
        .as_ref()
        .filter(|p| view.generation == Some(p.song_generation));
    let (frame, at) = match heard {
        Some(p) => (p.frame, p.instant_ns),
        None => match timeline {
            Timeline::Playing { frame } => (frame, now.0),
            Timeline::Paused { frame } => (frame as f64, now.0),
            _ => (0.0, now.0),
        },
    };
    let wire_state = if view.loading || timeline == Timeline::Loading {
        WireState::Loading
    } else if let Some(p) = heard {
        // The state at `at`, like `frame`: a pause or stop accepted for a later instant
        // (`wait_time_ms`, the group's lead) has not happened yet.
        match p.state {
            PlaybackState::Playing => WireState::Playing,
            PlaybackState::Paused { .. } => WireState::Paused,
            PlaybackState::Stopped => WireState::Stopped,
        }
    } else {
        match timeline {
            Timeline::Playing { .. } => WireState::Playing,
            Timeline::Paused { .. } => WireState::Paused,
            _ => WireState::Stopped,
        }
    };
    let sr = song.as_ref().map_or(0, |s| s.sample_rate);
    let whole = frame.max(0.0) as u64;
    GetPositionResponse {
        position: info.map_or(0, |i| {
            legacy::legacy_position(whole, i.data_offset, i.block_align)
        }),
        frame,
        position_ms: if sr > 0 {
            legacy::frame_to_millis(whole, sr)
        } else {
            0
        },
        sample_rate: sr,
        state: wire_state as i32,
        song_name: song.as_ref().map_or_else(String::new, |s| s.name.clone()),
        local_time_ns: at,
        content_hash: song
            .as_ref()
            .map_or_else(String::new, |s| s.content_hash.clone()),
        group_time_ns: Some(node.group_time(LocalTime(at)).0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{Config, Direction, LinkId, NodeId, PeerRole};

    fn link(remote: &str, listen: Option<&str>, peer: Option<u64>) -> LinkStatus {
        LinkStatus {
            link: LinkId(1),
            remote_addr: remote.to_string(),
            listen_addr: listen.map(str::to_string),
            peer: peer.map(NodeId),
            direction: Direction::Incoming,
            rtt: None,
            offset: None,
            drift_ppm: None,
            jitter: None,
            role: PeerRole::Peer,
            stratum: None,
            last_contact: 0,
            suspect: false,
            probes_sent: 0,
            probes_answered: 0,
        }
    }

    #[test]
    fn an_exit_closes_the_links_to_the_listen_address_or_node_the_caller_names() {
        let links = [
            link("10.0.0.2:40000", Some("10.0.0.2:50052"), Some(0xa)),
            link("10.0.0.3:40000", None, Some(0xb)),
            link("10.0.0.4:50052", None, None),
        ];
        let by_addr = exit_targets(&links, "10.0.0.2:50052", 0, None);
        assert_eq!(by_addr, [NodeId(0xa).to_string()]);
        let by_id = exit_targets(&links, "", 0xb, None);
        assert_eq!(by_id, [NodeId(0xb).to_string()]);
        // Before the handshake a link has no node id: it is named by its address.
        let unnamed = exit_targets(&links, "10.0.0.4:50052", 0, None);
        assert_eq!(unnamed, ["10.0.0.4:50052"]);
    }

    #[test]
    fn an_exit_naming_nothing_known_closes_the_links_from_the_callers_address() {
        let links = [
            link("10.0.0.2:40000", Some("10.0.0.2:50052"), Some(0xa)),
            link("10.0.0.2:40001", None, Some(0xb)),
        ];
        let from: SocketAddr = "10.0.0.2:40001".parse().unwrap();
        assert_eq!(
            exit_targets(&links, "10.9.9.9:1", 0, Some(from)),
            [NodeId(0xb).to_string()]
        );
        assert!(exit_targets(&links, "10.9.9.9:1", 0, None).is_empty());
    }

    #[test]
    fn a_load_at_a_later_frame_takes_two_state_versions_and_at_frame_zero_one() {
        let song = SongRef {
            name: "a.wav".into(),
            content_hash: String::new(),
            sample_rate: 48_000,
            frames: 480_000,
        };
        let mut node = Node::new(Config::new(NodeId(1)), 1, LocalTime(0));
        let now = LocalTime(1_000_000_000);
        let before = node.state().version.counter;
        load_at_position(&mut node, now, song.clone(), Some(0), None).unwrap();
        let after_load = node.state().version.counter;
        assert_eq!(after_load, before + 1);
        load_at_position(&mut node, now, song, Some(48_000), None).unwrap();
        assert_eq!(node.state().version.counter, after_load + 2);
    }
}
