//! The group's queue at the console: its commands parsed from a line, carried out on the node
//! with a one-line answer, the `queue` table, and the next song fetched ahead of the end.

use music262_proto::audio_service::SongInfo;
use sync_core::{Command, LocalTime, Node, QueueCommand, Repeat, SongRef};

use super::commands::SongChoice;
use super::fetcher::{Fetcher, Loading};
use super::format::{self, Typed};
use super::server_link::song_ref;
use super::songs::{self, Resolved};

/// A queue command typed at the prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum QueueInput {
    /// Show the queue.
    Show,
    /// Append songs, each named as `play` names one.
    Add(Vec<SongChoice>),
    /// Remove the entry at this position.
    Remove(usize),
    /// Move the entry at the first position to the second.
    Move(usize, usize),
    /// Empty the queue.
    Clear,
    /// The next entry.
    Next,
    /// The previous entry.
    Previous,
    /// Repeat off, one or all.
    Repeat(Repeat),
    /// Shuffle on or off.
    Shuffle(bool),
}

/// The help text of the queue commands.
pub const HELP: &str = "\
queue (shared by every connected peer):
  queue                    the queue, numbered, the current entry marked with >
  add <song>...            append songs, named as `play` names them: `add 3 5 1`, or several
                           names or words separated by commas: `add blue, red.wav`
  remove <n>               remove entry n (the current one: the next entry plays instead)
  move <from> <to>         move entry `from` to position `to`
  clear                    empty the queue (a song playing plays to its end)
  next, previous           play (or, stopped, cue) the next or previous entry
  repeat off|one|all       what happens when an entry ends
  shuffle on|off           play the queue in a shuffled order, the same on every peer
  play                     alone: plays the queue from its current entry (or its first)";

/// Parses a queue command: `word` (lower case) and the rest of the line. `None` when `word`
/// is not a queue command.
pub fn parse(word: &str, rest: &str) -> Option<Result<QueueInput, String>> {
    let none = |c: QueueInput| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(format!("`{word}` takes no argument"))
        }
    };
    Some(match word {
        "queue" | "q" => none(QueueInput::Show),
        "add" => parse_songs(rest).map(QueueInput::Add),
        "remove" | "rm" => parse_position(word, rest).map(QueueInput::Remove),
        "move" | "mv" => parse_move(rest),
        "clear" => none(QueueInput::Clear),
        "next" | "skip" => none(QueueInput::Next),
        "previous" | "prev" => none(QueueInput::Previous),
        "repeat" => match rest.to_ascii_lowercase().as_str() {
            "off" => Ok(QueueInput::Repeat(Repeat::Off)),
            "one" => Ok(QueueInput::Repeat(Repeat::One)),
            "all" => Ok(QueueInput::Repeat(Repeat::All)),
            _ => Err("`repeat` takes off, one or all".to_string()),
        },
        "shuffle" => match rest.to_ascii_lowercase().as_str() {
            "on" => Ok(QueueInput::Shuffle(true)),
            "off" => Ok(QueueInput::Shuffle(false)),
            _ => Err("`shuffle` takes on or off".to_string()),
        },
        _ => return None,
    })
}

/// Songs for `add`: playlist numbers separated by spaces, or names and words separated by
/// commas.
fn parse_songs(rest: &str) -> Result<Vec<SongChoice>, String> {
    if rest.is_empty() {
        return Err("`add` needs songs, like `add 3 5` or `add blue, red.wav`; type `help`".into());
    }
    let numbers: Option<Vec<usize>> = rest.split_whitespace().map(|w| w.parse().ok()).collect();
    if let Some(numbers) = numbers {
        if numbers.contains(&0) {
            return Err("songs are numbered from 1; type `playlist`".into());
        }
        return Ok(numbers.into_iter().map(SongChoice::Number).collect());
    }
    let names: Vec<&str> = rest.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err("an empty song name between commas; separate names with one comma".into());
    }
    Ok(names
        .into_iter()
        .map(|n| match n.parse::<usize>() {
            Ok(i) if i > 0 => SongChoice::Number(i),
            _ => SongChoice::Name(n.to_string()),
        })
        .collect())
}

fn parse_position(word: &str, text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err("queue entries are numbered from 1; type `queue`".into()),
        Err(_) if text.trim().is_empty() => Err(format!(
            "`{word}` needs an entry number (see `queue`); type `help`"
        )),
        Err(_) => Err(format!("`{text}` is not an entry number; type `queue`")),
    }
}

fn parse_move(rest: &str) -> Result<QueueInput, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [from, to] = words.as_slice() else {
        return Err("`move` needs two entry numbers, like `move 4 1`; type `help`".into());
    };
    Ok(QueueInput::Move(
        parse_position("move", from)?,
        parse_position("move", to)?,
    ))
}

/// The songs `choices` name in the playlist, or the one line saying which does not.
pub fn resolve_all(playlist: &[SongInfo], choices: &[SongChoice]) -> Result<Vec<SongRef>, String> {
    choices
        .iter()
        .map(|c| match songs::resolve(playlist, c) {
            Resolved::One(_, info) => Ok(song_ref(info)),
            Resolved::Several(found) => Err(format!(
                "`{}` matches {} songs ({}); name one",
                choice_text(c),
                found.len(),
                found
                    .iter()
                    .take(3)
                    .map(|(_, s)| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Resolved::Nothing => Err(match c {
                SongChoice::Number(n) => format!(
                    "there is no song {n}: the playlist has {} songs",
                    playlist.len()
                ),
                SongChoice::Name(name) => {
                    format!("no song is named `{name}` or matches it; type `playlist`")
                }
            }),
        })
        .collect()
}

fn choice_text(c: &SongChoice) -> String {
    match c {
        SongChoice::Number(n) => n.to_string(),
        SongChoice::Name(t) => t.clone(),
    }
}

/// Carries out a queue command on the node (songs already resolved for `add`); returns its
/// one-line answer, or the error line (then nothing changed).
pub fn execute(
    input: QueueInput,
    songs: Vec<SongRef>,
    node: &mut Node,
    now: LocalTime,
) -> Result<String, String> {
    let before = node.state().queue.clone();
    let command = match &input {
        QueueInput::Show => None,
        QueueInput::Add(_) => Some(QueueCommand::Add(songs.clone())),
        QueueInput::Remove(n) => Some(QueueCommand::Remove(*n)),
        QueueInput::Move(a, b) => Some(QueueCommand::Move { from: *a, to: *b }),
        QueueInput::Clear => Some(QueueCommand::Clear),
        QueueInput::Next => Some(QueueCommand::Next),
        QueueInput::Previous => Some(QueueCommand::Previous),
        QueueInput::Repeat(r) => Some(QueueCommand::Repeat(*r)),
        QueueInput::Shuffle(on) => Some(QueueCommand::Shuffle(*on)),
    };
    if let Some(command) = command {
        node.handle_command(now, Command::Queue(command), None)
            .map_err(|e| e.to_string())?;
    }
    let queue = &node.state().queue;
    let name = |n: usize| {
        before
            .entries
            .get(n - 1)
            .map_or(String::new(), |e| e.song.name.clone())
    };
    Ok(match input {
        QueueInput::Show => table(node),
        QueueInput::Add(_) => {
            let names: Vec<&str> = songs.iter().map(|s| s.name.as_str()).collect();
            let first = before.entries.len() + 1;
            format!(
                "queued {} as entr{} {first}{} of {}",
                names.join(", "),
                if names.len() == 1 { "y" } else { "ies" },
                if names.len() > 1 {
                    format!("-{}", first + names.len() - 1)
                } else {
                    String::new()
                },
                queue.entries.len()
            )
        }
        QueueInput::Remove(n) => {
            let was_current = before.current.and_then(|id| before.position(id)) == Some(n);
            match (was_current, node.state().queue.current_entry()) {
                (true, Some(e)) => {
                    let next = moved_to(node, now, &e.song.name);
                    format!("removed {n}. {}; {next}", name(n))
                }
                _ => format!("removed {n}. {}", name(n)),
            }
        }
        QueueInput::Move(a, b) => format!("moved {} from {a} to {b}", name(a)),
        QueueInput::Clear => format!("cleared the queue ({} entries)", before.entries.len()),
        QueueInput::Next | QueueInput::Previous => {
            let song = node.state().song.as_ref().map_or("", |s| s.name.as_str());
            moved_to(node, now, song)
        }
        QueueInput::Repeat(r) => format!("repeat {}", r.name()),
        QueueInput::Shuffle(on) => {
            if on {
                "shuffle on: the queue plays in a new shuffled order".to_string()
            } else {
                "shuffle off: the queue plays in list order".to_string()
            }
        }
    })
}

/// The answer to a move through the queue: the entry now current and what the group does.
fn moved_to(node: &Node, now: LocalTime, song: &str) -> String {
    let queue = &node.state().queue;
    let at = queue
        .current
        .and_then(|id| queue.position(id))
        .map_or(String::new(), |n| format!("{n}. "));
    match node.state().mode {
        sync_core::Mode::Stopped { .. } => {
            format!("now at {at}{song} (cued; `play` starts it)")
        }
        _ => format!(
            "now at {at}{song}: {}",
            format::command_effect(Typed::Play, node, now)
        ),
    }
}

/// The `queue` table: one numbered line per entry, the current one marked, then repeat and
/// shuffle.
pub fn table(node: &Node) -> String {
    let q = &node.state().queue;
    if q.entries.is_empty() {
        return "the queue is empty; add songs with `add <song>`".to_string();
    }
    let mut lines: Vec<String> = q
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mark = if Some(e.id) == q.current { ">" } else { " " };
            let length = format::frame_time(&e.song, e.song.frames as f64);
            format!("{mark} {:>3}. {}  ({length})", i + 1, e.song.name)
        })
        .collect();
    lines.push(format!(
        "repeat {}, shuffle {}",
        q.repeat.name(),
        if q.shuffle.is_some() { "on" } else { "off" }
    ));
    lines.join("\n")
}

/// `play` alone with a queue: the queue from its current entry (or its first). `None` when
/// the queue is empty (then `play` replays the current song, as it always did).
pub fn start(node: &mut Node, now: LocalTime) -> Option<String> {
    if node.state().queue.entries.is_empty() {
        return None;
    }
    Some(
        match node.handle_command(now, Command::Queue(QueueCommand::Start), None) {
            Ok(()) => {
                let song = node.state().song.as_ref().map(|s| s.name.clone());
                moved_to(node, now, &song.unwrap_or_default())
            }
            Err(e) => e.to_string(),
        },
    )
}

/// `play <song>`: the song goes right after the current entry and plays now.
pub fn play_now(node: &mut Node, now: LocalTime, song: SongRef) -> String {
    match node.handle_command(now, Command::Queue(QueueCommand::PlayNow(song)), None) {
        Ok(()) => format::command_effect(Typed::Play, node, now),
        Err(e) => e.to_string(),
    }
}

/// Fetches the queue's next song ahead of the end through the fetcher's usual entry point,
/// once per song: a song this client already installed or fetched is in the fetcher's cache
/// (and asking for a cached song would install it over the one playing).
#[derive(Default)]
pub struct Prefetch {
    /// Songs installed or fetched ahead here, most recent last.
    known: Vec<SongRef>,
}

/// Songs remembered as fetched (the fetcher's cache holds fewer).
const KNOWN_SONGS: usize = 32;

impl Prefetch {
    /// A song was installed in the player (so it is in the fetcher's cache).
    pub fn installed(&mut self, song: &SongRef) {
        self.remember(song);
    }

    fn remember(&mut self, song: &SongRef) {
        self.known.retain(|k| !k.same_song(song));
        self.known.push(song.clone());
        if self.known.len() > KNOWN_SONGS {
            self.known.remove(0);
        }
    }

    /// Asks the fetcher for the node's upcoming song when it is new here and no download runs.
    pub fn check(&mut self, node: &Node, fetcher: &mut Fetcher) -> Loading {
        let Some(song) = node.upcoming_song() else {
            return Loading::Pending;
        };
        if fetcher.loading().is_some() || self.known.iter().any(|k| k.same_song(&song)) {
            return Loading::Pending;
        }
        tracing::info!(song = %song.name, "fetching the queue's next song ahead of the end");
        self.remember(&song);
        fetcher.load(song)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_commands_parse() {
        assert_eq!(parse("queue", ""), Some(Ok(QueueInput::Show)));
        assert_eq!(
            parse("add", "3 1"),
            Some(Ok(QueueInput::Add(vec![
                SongChoice::Number(3),
                SongChoice::Number(1)
            ])))
        );
        assert_eq!(
            parse("add", "blue song, 2 ,red.wav"),
            Some(Ok(QueueInput::Add(vec![
                SongChoice::Name("blue song".into()),
                SongChoice::Number(2),
                SongChoice::Name("red.wav".into())
            ])))
        );
        assert_eq!(parse("remove", "2"), Some(Ok(QueueInput::Remove(2))));
        assert_eq!(parse("move", "4 1"), Some(Ok(QueueInput::Move(4, 1))));
        assert_eq!(
            parse("repeat", "ALL"),
            Some(Ok(QueueInput::Repeat(Repeat::All)))
        );
        assert_eq!(parse("shuffle", "on"), Some(Ok(QueueInput::Shuffle(true))));
        for (w, c) in [
            ("clear", QueueInput::Clear),
            ("next", QueueInput::Next),
            ("previous", QueueInput::Previous),
        ] {
            assert_eq!(parse(w, ""), Some(Ok(c)));
        }
        assert_eq!(parse("pause", ""), None);
    }

    #[test]
    fn bad_queue_input_gets_one_clear_line() {
        for (word, rest, want) in [
            (
                "add",
                "",
                "`add` needs songs, like `add 3 5` or `add blue, red.wav`; type `help`",
            ),
            ("add", "0 2", "songs are numbered from 1; type `playlist`"),
            (
                "add",
                "a,,b",
                "an empty song name between commas; separate names with one comma",
            ),
            (
                "remove",
                "",
                "`remove` needs an entry number (see `queue`); type `help`",
            ),
            ("remove", "x", "`x` is not an entry number; type `queue`"),
            (
                "remove",
                "0",
                "queue entries are numbered from 1; type `queue`",
            ),
            (
                "move",
                "1",
                "`move` needs two entry numbers, like `move 4 1`; type `help`",
            ),
            ("repeat", "twice", "`repeat` takes off, one or all"),
            ("shuffle", "", "`shuffle` takes on or off"),
            ("next", "now", "`next` takes no argument"),
        ] {
            assert_eq!(
                parse(word, rest),
                Some(Err(want.to_string())),
                "{word} {rest}"
            );
        }
    }
}
