//! The console's command language carried out: a line typed at the prompt or clicked on the
//! web page becomes group commands, player settings or a report. It returns what it has to say
//! instead of printing it, so that the caller decides where the text goes.

use player::{ChannelMode, Player};
use sync_core::{
    Command, CommandError, LinkCommand, LocalTime, Node, PeerAddr, PeerSelector, SongRef,
};

use super::commands::{self, SongChoice, UserCommand};
use super::format::{self, Typed};
use super::links::Links;
use super::peers::RefusedCounts;
use super::queue::{self, QueueInput};
use super::server_link::{Pending, ServerLink, song_ref};
use super::songs::{self, Resolved};
use crate::discovery::{self, Discovery};

/// What a command reads and acts on besides the executor's own settings.
pub struct Context<'a> {
    /// The node, for group and link commands.
    pub node: &'a mut Node,
    /// Now, on the node's clock.
    pub now: LocalTime,
    /// The player, for this client's own settings.
    pub player: &'a Player,
    /// The music server: playlist, joinable clients.
    pub server: &'a ServerLink,
    /// The song downloading, for `status`.
    pub loading: Option<&'a SongRef>,
    /// The last song that could not be loaded and why, for `status`.
    pub failed: Option<(&'a SongRef, &'a str)>,
    /// What the transports refused, for `status`.
    pub refused: RefusedCounts,
    /// The transports, for the `connections` table.
    pub links: &'a Links,
    /// What discovery found, unless it is off.
    pub discovery: Option<&'a Discovery>,
}

/// What a command did.
#[derive(Debug)]
pub struct Reply {
    /// What it says, in order (each entry one or more lines).
    pub said: Vec<String>,
    /// Its error line, if refused.
    pub result: Result<(), String>,
    /// Whether it asks the client to quit.
    pub quit: bool,
    /// The address a `join` dials: a failure there is said again even if said before.
    pub joining: Option<String>,
    /// What it says later, once an answer arrives (the music server's list for `peers`).
    pub later: Option<tokio::task::JoinHandle<String>>,
}

impl Default for Reply {
    /// Nothing said, done, go on.
    fn default() -> Self {
        Reply {
            said: Vec::new(),
            result: Ok(()),
            quit: false,
            joining: None,
            later: None,
        }
    }
}

impl Reply {
    fn said(text: String) -> Self {
        Reply {
            said: vec![text],
            ..Reply::default()
        }
    }

    fn result(result: Result<(), String>) -> Self {
        Reply {
            result,
            ..Reply::default()
        }
    }
}

/// Carries out console commands.
pub struct Executor {
    /// This client's joinable address.
    advertised: String,
    /// How peers are authenticated, for `status`.
    key_note: String,
    /// The volume last set, 0 to 1.
    volume: f32,
    /// The channels last chosen.
    channel: ChannelMode,
}

impl Executor {
    /// An executor for the client reachable at `advertised`.
    pub fn new(advertised: String, key_note: String) -> Self {
        Executor {
            advertised,
            key_note,
            volume: 1.0,
            channel: ChannelMode::default(),
        }
    }

    /// The volume last set, 0 to 1.
    pub fn volume(&self) -> f32 {
        self.volume
    }

    /// The channels last chosen.
    pub fn channel(&self) -> ChannelMode {
        self.channel
    }

    /// Takes back a volume and channel kept from an earlier run, on the player too.
    pub fn restore(&mut self, player: &Player, volume: Option<f32>, channel: Option<ChannelMode>) {
        if let Some(v) = volume {
            player.set_volume(v);
            self.volume = v;
        }
        if let Some(mode) = channel {
            player.set_channel(mode);
            self.channel = mode;
        }
    }

    /// Runs one line of the command language.
    pub fn execute(&mut self, line: &str, ctx: Context<'_>) -> Reply {
        let cmd = match commands::parse(line) {
            Ok(Some(c)) => c,
            Ok(None) => return Reply::default(),
            Err(e) => return Reply::result(Err(e)),
        };
        let Context { node, now, .. } = ctx;
        // A group command is answered with what it does, where and when.
        let command = |node: &mut Node, typed: Typed, c: Command| {
            let r = node.handle_command(now, c, None);
            match r {
                Ok(()) => Reply::said(format::command_effect(typed, node, now)),
                Err(e) => Reply::result(Err(e.to_string())),
            }
        };
        let link_command = |node: &mut Node, c: LinkCommand| {
            Reply::result(node.handle_link_command(now, c).map_err(|e| e.to_string()))
        };
        match cmd {
            UserCommand::Quit => Reply {
                quit: true,
                ..Reply::default()
            },
            UserCommand::Help => Reply::said(format!("{}\n{}", commands::HELP, queue::HELP)),
            UserCommand::Queue(input) => {
                let songs = match &input {
                    QueueInput::Add(choices) => {
                        match queue::resolve_all(ctx.server.playlist(), choices) {
                            Ok(songs) => songs,
                            Err(e) => return Reply::result(Err(e)),
                        }
                    }
                    _ => Vec::new(),
                };
                match queue::execute(input, songs, node, now) {
                    Ok(line) => Reply::said(line),
                    Err(e) => Reply::result(Err(e)),
                }
            }
            UserCommand::Playlist => {
                ctx.server.fetch_playlist(None, true);
                Reply::default()
            }
            UserCommand::Search(words) => {
                Reply::said(songs::search_text(ctx.server.playlist(), &words))
            }
            UserCommand::Play(choice) => Reply {
                said: play(choice, true, node, now, ctx.server),
                ..Reply::default()
            },
            UserCommand::Pause => command(node, Typed::Pause, Command::Pause),
            UserCommand::Resume => command(node, Typed::Resume, Command::Resume),
            UserCommand::Stop => command(node, Typed::Stop, Command::Stop),
            UserCommand::Seek(ms) => match &node.state().song {
                None => Reply::result(Err(CommandError::NoSong.to_string())),
                Some(s) => {
                    let frame = ms.saturating_mul(u64::from(s.sample_rate)) / 1000;
                    let length = format::frame_time(s, s.frames as f64);
                    match node.handle_command(now, Command::Seek { frame }, None) {
                        Ok(()) => Reply::said(format::command_effect(Typed::Seek, node, now)),
                        // The node counts in frames; the user typed a time.
                        Err(CommandError::OutOfRange { .. }) => Reply::result(Err(format!(
                            "position {} is beyond the end of the song ({length})",
                            format::clock_time(ms)
                        ))),
                        Err(e) => Reply::result(Err(e.to_string())),
                    }
                }
            },
            UserCommand::Status => Reply::said(self.status(&Context { node, ..ctx })),
            UserCommand::Connections => {
                let links = ctx.links;
                Reply::said(format::connections(&node.links(), now, |l| {
                    links.via(l).map_or("-", |v| v.name())
                }))
            }
            UserCommand::Peers => Reply {
                later: Some(ctx.server.print_peers()),
                ..Reply::default()
            },
            UserCommand::Join(text) => match PeerAddr::parse(&text) {
                Err(e) => Reply::result(Err(e.to_string())),
                Ok(_) if is_music_server(&text, ctx.server.addr(), node) => {
                    Reply::result(Err(format!(
                        "{text} is the music server, not a client: join a client's peer port \
                         (`peers` lists them)"
                    )))
                }
                Ok(addr) => {
                    let mut reply = link_command(node, LinkCommand::Join { addr });
                    if reply.result.is_ok() {
                        reply.said.push(format!("joining {text}..."));
                        reply.joining = Some(text);
                    }
                    reply
                }
            },
            UserCommand::JoinRoom(name) => {
                let Some(found) = ctx.discovery else {
                    return Reply::result(Err(format!(
                        "`{name}` is not an address (discovery is off, so rooms are joined by \
                         address, like `join 192.168.1.10:50052`)"
                    )));
                };
                let room = match found.find_room(&name, node.id().0) {
                    Ok(room) => room,
                    Err(e) => return Reply::result(Err(e)),
                };
                let linked = node
                    .links()
                    .into_iter()
                    .find(|l| l.peer.is_some_and(|p| format!("{p}") == room.node_id));
                if let Some(link) = linked {
                    return Reply::result(Err(format!(
                        "already linked to {} ({})",
                        room.name,
                        link.listen_addr.unwrap_or(link.remote_addr)
                    )));
                }
                let Some(addr) = room
                    .addr()
                    .and_then(|a| PeerAddr::parse(&a.to_string()).ok())
                else {
                    return Reply::result(Err(format!("room {name} announced no address")));
                };
                let text = addr.to_string();
                let mut reply = link_command(node, LinkCommand::Join { addr });
                if reply.result.is_ok() {
                    reply
                        .said
                        .push(format!("joining {} at {text}...", room.name));
                    reply.joining = Some(text);
                }
                reply
            }
            UserCommand::Discover => match ctx.discovery {
                Some(found) => Reply::said(discovery::listing(
                    &found.rooms(node.id().0),
                    &found.servers(),
                )),
                None => Reply::result(Err("discovery is off (--no-discovery)".to_string())),
            },
            UserCommand::Leave(text) => {
                // A room's name (found on the network) stands for its node id.
                let room = ctx
                    .discovery
                    .filter(|_| !text.contains(':'))
                    .and_then(|d| d.find_room(&text, node.id().0).ok());
                let selector = room.as_ref().map_or(text.as_str(), |r| r.node_id.as_str());
                let r = PeerSelector::parse(selector)
                    .and_then(|peer| node.handle_link_command(now, LinkCommand::Leave { peer }))
                    // An unknown peer is named as typed (an id in capitals stays so).
                    .map_err(|e| match e {
                        CommandError::UnknownPeer(_) => CommandError::UnknownPeer(text.clone()),
                        e => e,
                    });
                let mut reply = Reply::result(r.map_err(|e| e.to_string()));
                if reply.result.is_ok() {
                    reply.said.push(format!("left {text}"));
                }
                reply
            }
            UserCommand::Gossip => {
                let n = node.peer_count();
                let mut reply = link_command(node, LinkCommand::Gossip);
                if reply.result.is_ok() {
                    reply
                        .said
                        .push(format!("shared peer addresses with {n} peer(s)"));
                }
                reply
            }
            UserCommand::Channel(mode) => {
                if let Some(mode) = mode {
                    ctx.player.set_channel(mode);
                    self.channel = mode;
                }
                Reply::said(format!("playing channel: {:?}", self.channel).to_lowercase())
            }
            UserCommand::Volume(v) => {
                if let Some(v) = v {
                    ctx.player.set_volume(v);
                    self.volume = v;
                }
                Reply::said(format!("volume {:.0}%", self.volume * 100.0))
            }
            UserCommand::Latency(None) => Reply::said(format!(
                "output latency {:.1} ms (set it with `latency <ms>`)",
                ctx.player.output_latency_ns() as f64 / 1e6
            )),
            UserCommand::Latency(Some(ms)) => {
                ctx.player.set_output_latency_ns((ms * 1e6).round() as u64);
                // While playing, the output moves by the change at once; the sync loop sees it
                // as an error and re-cues onto the group's timeline.
                Reply::said(latency_note(ms))
            }
        }
    }

    /// The `status` text.
    fn status(&self, ctx: &Context<'_>) -> String {
        let text = format::status(&format::StatusInput {
            node: ctx.node,
            now: ctx.now,
            player: ctx.player,
            server: ctx.server.addr(),
            server_up: ctx.server.server_up(),
            advertised: &self.advertised,
            loading: ctx.loading,
            failed: ctx.failed,
        });
        let r = ctx.refused;
        let latency = ctx.player.output_latency_ns();
        let text = if latency > 0 {
            format!("{text}, output latency {:.1} ms", latency as f64 / 1e6)
        } else {
            text
        };
        format!(
            "{text}\nsecurity: {}; refused: {} links, {} frames, {} legacy calls; \
             {} frames dropped by the rate limit",
            self.key_note, r.links, r.frames, r.legacy_calls, r.rate_limited
        )
    }
}

/// `play`: the song chosen (by number, name or words, see [`songs::resolve`]), put in the
/// queue after the current entry and played now; alone, the queue from its current entry, or
/// with an empty queue the current song again. With `may_fetch`, a song not in the playlist is
/// looked for again once it is fetched. Returns what to say.
pub fn play(
    choice: Option<SongChoice>,
    may_fetch: bool,
    node: &mut Node,
    now: LocalTime,
    server: &ServerLink,
) -> Vec<String> {
    let song = match &choice {
        None => match queue::start(node, now) {
            Some(said) => return vec![said],
            None => None,
        },
        Some(c) => match songs::resolve(server.playlist(), c) {
            Resolved::One(_, info) => Some(song_ref(info)),
            Resolved::Several(found) => {
                let text = match c {
                    SongChoice::Name(text) => text.clone(),
                    SongChoice::Number(n) => n.to_string(),
                };
                return vec![songs::several(&text, &found)];
            }
            Resolved::Nothing if may_fetch => {
                server.fetch_playlist(Some(Pending::User(choice)), false);
                return Vec::new();
            }
            Resolved::Nothing => {
                return vec![match c {
                    SongChoice::Number(n) => format!(
                        "there is no song {n}: the playlist has {} songs",
                        server.playlist().len()
                    ),
                    SongChoice::Name(name) => {
                        format!("no song is named `{name}` or matches it; type `playlist`")
                    }
                }];
            }
        },
    };
    if let Some(song) = song {
        return vec![queue::play_now(node, now, song)];
    }
    match node.handle_command(now, Command::Play { song, frame: 0 }, None) {
        Ok(()) => vec![format::command_effect(Typed::Play, node, now)],
        Err(e) => vec![e.to_string()],
    }
}

/// What an output latency of `ms` does, in one line.
pub fn latency_note(ms: f64) -> String {
    if ms > 0.0 {
        format!("output latency {ms:.1} ms: this client starts that much early to be heard in sync")
    } else {
        "output latency 0.0 ms: no extra delay; this client plays on the group's instant as its \
         sound card reports it"
            .to_string()
    }
}

/// Whether `join` text names the music server's endpoint (`server`), on its host or on this
/// machine.
fn is_music_server(text: &str, server: &str, node: &Node) -> bool {
    let own = &node.config().own_addrs;
    let local: Vec<&str> = own
        .iter()
        .filter_map(|a| a.rsplit_once(':').map(|(h, _)| h))
        .collect();
    commands::same_endpoint(text, server, &local)
}
