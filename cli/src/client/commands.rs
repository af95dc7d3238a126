//! The client's console commands, parsed from a line.

use player::ChannelMode;

use super::queue::{self, QueueInput};

/// How a song is named at the prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SongChoice {
    /// 1-based playlist number.
    Number(usize),
    /// A file name as listed, or words of its title, artist, album or file name.
    Name(String),
}

/// A command typed at the prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum UserCommand {
    /// Show the server's songs.
    Playlist,
    /// List the songs whose tags or file name hold these words.
    Search(String),
    /// Play a song (or the current one again).
    Play(Option<SongChoice>),
    /// Pause everywhere.
    Pause,
    /// Resume everywhere.
    Resume,
    /// Stop everywhere.
    Stop,
    /// Move to a position, in milliseconds.
    Seek(u64),
    /// Playback and sync state.
    Status,
    /// Joinable clients registered with the server.
    Peers,
    /// This client's links.
    Connections,
    /// Link to a peer at `host:port`.
    Join(String),
    /// Link to a room found on the local network, by its name or node id.
    JoinRoom(String),
    /// The rooms and music servers found on the local network.
    Discover,
    /// Close the link to a peer (address or node id).
    Leave(String),
    /// Share peer addresses with every peer.
    Gossip,
    /// Which channels this client plays (`None`: show it).
    Channel(Option<ChannelMode>),
    /// Volume, 0 to 1 (`None`: show it).
    Volume(Option<f32>),
    /// Extra delay of this client's output device, in milliseconds (`None`: show it).
    Latency(Option<f64>),
    /// A command of the group's queue.
    Queue(QueueInput),
    /// The list of commands.
    Help,
    /// Leave the group and exit.
    Quit,
}

/// The help text.
pub const HELP: &str = "\
playback (applies to every connected peer at the same instant):
  playlist                 list the songs on the music server: title, artist, length
  search <words>           list the songs whose title, artist, album or file name hold the words
  play <number|name|words> play a song from the start: its number, its file name, or words of
                           its title, artist, album or file name (several matches are listed);
                           it goes into the queue right after the current entry; play alone:
                           the queue from its current entry, or with an empty queue the current
                           song again
  pause                    pause everyone on the same frame
  resume                   resume from there
  stop                     stop
  seek <time>              jump to a position: 83, 83.5, 1:23 or 1:23.5
peers:
  peers                    clients registered with the server (addresses you can join)
  connections              this client's links: address, node id, role in clock sync,
                           round-trip time, clock offset, drift, jitter, last contact
  join <ip:port|name>      link to another client, by address or by the name of a room found
  discover                 the rooms and music servers found on the local network
  leave <ip:port|node id>  close a link
  gossip                   share the addresses of your peers with all of them
this client only:
  status                   what plays, where, and how well this client is in sync
  channel left|right|both  which channel(s) this client plays (`channel` alone shows it)
  volume <0-100>           this client's volume (`volume` alone shows it)
  latency <ms>             extra delay of this client's speakers that the sound card does not
                           report (Bluetooth, HDMI receivers): playback starts that much earlier
                           so it is heard in sync; `latency` alone shows it
  help                     this list
  quit                     leave the group and exit (also: exit)";

/// Parses a `seek` position: seconds (`83`, `83.5`) or minutes:seconds (`1:23`, `1:23.5`),
/// optionally `h:mm:ss`. Returns milliseconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a time; use seconds (83.5) or minutes:seconds (1:23.5)");
    let parts: Vec<&str> = s.trim().trim_end_matches('s').split(':').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let mut total = 0.0f64;
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        let v: f64 = if last {
            p.parse().map_err(|_| bad())?
        } else {
            p.parse::<u64>().map_err(|_| bad())? as f64
        };
        if !v.is_finite() || v < 0.0 || (i > 0 && v >= 60.0) {
            return Err(bad());
        }
        total = total * 60.0 + v;
    }
    if total > 1e9 {
        return Err(bad());
    }
    Ok((total * 1000.0).round() as u64)
}

/// Parses one line. `Ok(None)` for an empty line.
pub fn parse(line: &str) -> Result<Option<UserCommand>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let word = word.to_ascii_lowercase();
    let need = |what: &str| -> Result<&str, String> {
        if rest.is_empty() {
            Err(format!("`{word}` needs {what}; type `help`"))
        } else {
            Ok(rest)
        }
    };
    let none = |c: UserCommand| -> Result<Option<UserCommand>, String> {
        if rest.is_empty() {
            Ok(Some(c))
        } else {
            Err(format!("`{word}` takes no argument"))
        }
    };
    if let Some(q) = queue::parse(&word, rest) {
        return q.map(|q| Some(UserCommand::Queue(q)));
    }
    match word.as_str() {
        "playlist" | "ls" | "songs" => none(UserCommand::Playlist),
        "play" => Ok(Some(UserCommand::Play(if rest.is_empty() {
            None
        } else if let Ok(n) = rest.parse::<usize>() {
            if n == 0 {
                return Err("songs are numbered from 1; type `playlist`".into());
            }
            Some(SongChoice::Number(n))
        } else {
            Some(SongChoice::Name(rest.to_string()))
        }))),
        "search" | "find" => Ok(Some(UserCommand::Search(
            need("words to look for, like `search blue`")?.to_string(),
        ))),
        "pause" => none(UserCommand::Pause),
        "resume" => none(UserCommand::Resume),
        "stop" => none(UserCommand::Stop),
        "seek" => Ok(Some(UserCommand::Seek(parse_time(need("a time")?)?))),
        "status" => none(UserCommand::Status),
        "peers" => none(UserCommand::Peers),
        "connections" | "conns" => none(UserCommand::Connections),
        "join" => {
            let addr = need("an address or a room's name, like `join 192.168.1.10:50052`")?;
            match check_addr(addr) {
                Ok(()) => Ok(Some(UserCommand::Join(addr.to_string()))),
                // Text that is no `host:port` may be a room's name.
                Err(_) if !addr.contains(':') => Ok(Some(UserCommand::JoinRoom(addr.to_string()))),
                Err(e) => Err(e),
            }
        }
        "leave" => Ok(Some(UserCommand::Leave(
            need("a peer address or node id (see `connections`)")?.to_string(),
        ))),
        "gossip" => none(UserCommand::Gossip),
        "discover" => none(UserCommand::Discover),
        "channel" if rest.is_empty() => Ok(Some(UserCommand::Channel(None))),
        "channel" => {
            let mode = rest
                .parse::<ChannelMode>()
                .map_err(|_| format!("`{rest}` is not a channel; use left, right or both"))?;
            Ok(Some(UserCommand::Channel(Some(mode))))
        }
        "volume" | "vol" if rest.is_empty() => Ok(Some(UserCommand::Volume(None))),
        "volume" | "vol" => {
            let v: f32 = rest
                .trim_end_matches('%')
                .parse()
                .map_err(|_| format!("`{rest}` is not a volume; use 0 to 100"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err("volume goes from 0 to 100".into());
            }
            Ok(Some(UserCommand::Volume(Some(v / 100.0))))
        }
        "latency" => {
            if rest.is_empty() {
                return Ok(Some(UserCommand::Latency(None)));
            }
            let ms = parse_latency_ms(rest)?;
            Ok(Some(UserCommand::Latency(Some(ms))))
        }
        "help" | "?" => none(UserCommand::Help),
        "quit" | "exit" => none(UserCommand::Quit),
        _ => Err(format!("unknown command `{word}`; type `help`")),
    }
}

/// Largest output latency accepted, in milliseconds (Bluetooth stays well under half a second).
pub const MAX_LATENCY_MS: f64 = 2_000.0;

/// Parses a device latency in milliseconds (`40`, `40ms`, `12.5`), 0 to [`MAX_LATENCY_MS`].
pub fn parse_latency_ms(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches("ms")
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a latency; give milliseconds, like `latency 40`"))?;
    if !v.is_finite() || !(0.0..=MAX_LATENCY_MS).contains(&v) {
        return Err(format!(
            "latency goes from 0 to {MAX_LATENCY_MS:.0} ms (measure your speakers' delay, e.g. \
             with a phone recording both)"
        ));
    }
    Ok(v)
}

/// Checks that `addr` looks like `host:port` with a valid port; one line if not.
pub fn check_addr(addr: &str) -> Result<(), String> {
    sync_core::PeerAddr::parse(addr)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `a` and `b` (`host:port`) name one endpoint: the same host and port, or the same
/// port on hosts that are both this machine (loopback, `localhost`, or one of `local`).
pub fn same_endpoint(a: &str, b: &str, local: &[&str]) -> bool {
    let split = |s: &str| {
        s.rsplit_once(':').map(|(h, p)| {
            (
                h.trim_matches(['[', ']']).to_ascii_lowercase(),
                p.to_string(),
            )
        })
    };
    let is_local = |host: &str| {
        host == "localhost"
            || local
                .iter()
                .any(|l| l.trim_matches(['[', ']']).eq_ignore_ascii_case(host))
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    };
    match (split(a), split(b)) {
        (Some((ha, pa)), Some((hb, pb))) => {
            pa == pb && (ha == hb || (is_local(&ha) && is_local(&hb)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint_is_the_same_host_and_port_or_the_same_port_on_this_machine() {
        let local = ["10.0.0.5"];
        assert!(same_endpoint("10.0.0.2:50051", "10.0.0.2:50051", &local));
        assert!(same_endpoint("127.0.0.1:50051", "localhost:50051", &local));
        assert!(same_endpoint("10.0.0.5:50051", "[::1]:50051", &local));
        assert!(!same_endpoint("10.0.0.2:50051", "localhost:50051", &local));
        assert!(!same_endpoint("127.0.0.1:50052", "localhost:50051", &local));
    }

    #[test]
    fn a_join_of_text_without_a_port_is_a_room_name_and_a_bad_address_is_refused() {
        assert_eq!(
            parse("join kitchen").unwrap(),
            Some(UserCommand::JoinRoom("kitchen".into()))
        );
        assert_eq!(parse("discover").unwrap(), Some(UserCommand::Discover));
        assert!(parse("join 10.0.0.2:0").is_err());
    }

    #[test]
    fn every_documented_command_parses() {
        assert_eq!(parse("playlist").unwrap(), Some(UserCommand::Playlist));
        assert_eq!(
            parse("play 2").unwrap(),
            Some(UserCommand::Play(Some(SongChoice::Number(2))))
        );
        assert_eq!(
            parse("play  my song.wav ").unwrap(),
            Some(UserCommand::Play(Some(SongChoice::Name(
                "my song.wav".into()
            ))))
        );
        assert_eq!(parse("PLAY").unwrap(), Some(UserCommand::Play(None)));
        assert_eq!(
            parse("search the  blue").unwrap(),
            Some(UserCommand::Search("the  blue".into()))
        );
        assert_eq!(
            parse("seek 1:23.5").unwrap(),
            Some(UserCommand::Seek(83_500))
        );
        assert_eq!(
            parse("join 10.0.0.2:50052").unwrap(),
            Some(UserCommand::Join("10.0.0.2:50052".into()))
        );
        assert_eq!(
            parse("leave 10.0.0.2:50052").unwrap(),
            Some(UserCommand::Leave("10.0.0.2:50052".into()))
        );
        assert_eq!(
            parse("channel left").unwrap(),
            Some(UserCommand::Channel(Some(ChannelMode::Left)))
        );
        assert_eq!(parse("channel").unwrap(), Some(UserCommand::Channel(None)));
        assert_eq!(
            parse("volume 50").unwrap(),
            Some(UserCommand::Volume(Some(0.5)))
        );
        assert_eq!(parse("volume").unwrap(), Some(UserCommand::Volume(None)));
        assert_eq!(
            parse("latency 40ms").unwrap(),
            Some(UserCommand::Latency(Some(40.0)))
        );
        assert_eq!(parse("latency").unwrap(), Some(UserCommand::Latency(None)));
        for (w, c) in [
            ("pause", UserCommand::Pause),
            ("resume", UserCommand::Resume),
            ("stop", UserCommand::Stop),
            ("status", UserCommand::Status),
            ("peers", UserCommand::Peers),
            ("connections", UserCommand::Connections),
            ("gossip", UserCommand::Gossip),
            ("help", UserCommand::Help),
            ("quit", UserCommand::Quit),
            ("exit", UserCommand::Quit),
        ] {
            assert_eq!(parse(w).unwrap(), Some(c), "{w}");
        }
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn bad_input_gets_one_clear_line() {
        for (line, want) in [
            ("dance", "unknown command `dance`; type `help`"),
            ("play 0", "songs are numbered from 1; type `playlist`"),
            // `join nowhere` is a room's name: the executor says when no room has it.
            (
                "join 1.2.3.4:99999",
                "`1.2.3.4:99999` is not an address; use ip:port, like 192.168.1.10:50052",
            ),
            (
                "join",
                "`join` needs an address or a room's name, like `join 192.168.1.10:50052`; type \
                 `help`",
            ),
            (
                "seek soon",
                "`soon` is not a time; use seconds (83.5) or minutes:seconds (1:23.5)",
            ),
            (
                "seek 1:75",
                "`1:75` is not a time; use seconds (83.5) or minutes:seconds (1:23.5)",
            ),
            ("pause now", "`pause` takes no argument"),
            (
                "search",
                "`search` needs words to look for, like `search blue`; type `help`",
            ),
            ("volume 120", "volume goes from 0 to 100"),
            (
                "latency soon",
                "`soon` is not a latency; give milliseconds, like `latency 40`",
            ),
            (
                "latency -5",
                "latency goes from 0 to 2000 ms (measure your speakers' delay, e.g. with a phone \
                 recording both)",
            ),
            (
                "channel middle",
                "`middle` is not a channel; use left, right or both",
            ),
        ] {
            let err = parse(line).unwrap_err();
            assert_eq!(err, want);
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn times_parse_in_seconds_or_minutes() {
        assert_eq!(parse_time("83").unwrap(), 83_000);
        assert_eq!(parse_time("0.25").unwrap(), 250);
        assert_eq!(parse_time("1:02:03").unwrap(), 3_723_000);
        assert_eq!(parse_time("12s").unwrap(), 12_000);
        assert!(parse_time("-3").is_err());
        assert!(parse_time("1::2").is_err());
    }
}
