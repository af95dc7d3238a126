//! Songs named at the prompt: by number, by file name, or by words matched against the tags
//! and the file name; and the playlist and search results as the console shows them.

use music262_proto::audio_service::SongInfo;

use super::commands::SongChoice;

/// Matches listed at most when several songs fit the words.
const MAX_LISTED_MATCHES: usize = 10;

/// What a song argument names in the playlist.
#[derive(Debug, PartialEq)]
pub enum Resolved<'a> {
    /// One song (its 0-based index in the playlist).
    One(usize, &'a SongInfo),
    /// Several songs fit the words: listed, not guessed.
    Several(Vec<(usize, &'a SongInfo)>),
    /// None fits.
    Nothing,
}

/// Finds what `choice` names: a number; a file name (exactly, then ignoring case, then the
/// file name without its folders); else every song whose title, artist, album or file name
/// hold all the words, ignoring case.
pub fn resolve<'a>(playlist: &'a [SongInfo], choice: &SongChoice) -> Resolved<'a> {
    let text = match choice {
        SongChoice::Number(n) => {
            return match playlist.get(n.wrapping_sub(1)) {
                Some(s) => Resolved::One(n - 1, s),
                None => Resolved::Nothing,
            };
        }
        SongChoice::Name(text) => text.trim(),
    };
    let by_name: [&dyn Fn(&SongInfo) -> bool; 3] = [
        &|s| s.name == text,
        &|s| s.name.eq_ignore_ascii_case(text),
        &|s| base_name(&s.name).eq_ignore_ascii_case(text),
    ];
    for test in by_name {
        let found: Vec<_> = playlist
            .iter()
            .enumerate()
            .filter(|(_, s)| test(s))
            .collect();
        if !found.is_empty() {
            return one_or_several(found);
        }
    }
    one_or_several(search(playlist, text))
}

fn one_or_several(mut found: Vec<(usize, &SongInfo)>) -> Resolved<'_> {
    match found.len() {
        0 => Resolved::Nothing,
        1 => {
            let (i, s) = found.remove(0);
            Resolved::One(i, s)
        }
        _ => Resolved::Several(found),
    }
}

/// The file name of a song's name, without its folders.
fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Songs whose title, artist, album or file name hold every word of `words` (ignoring case),
/// in playlist order. No words match nothing.
pub fn search<'a>(playlist: &'a [SongInfo], words: &str) -> Vec<(usize, &'a SongInfo)> {
    let words: Vec<String> = words.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return Vec::new();
    }
    playlist
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            let hay = [&s.title, &s.artist, &s.album, &s.name]
                .map(|t| t.to_lowercase())
                .join("\n");
            words.iter().all(|w| hay.contains(w.as_str()))
        })
        .collect()
}

/// One song as a line: number, title and artist (or the file name when untagged), length,
/// and the file name when the title is shown.
pub fn line(index: usize, s: &SongInfo) -> String {
    let length = if s.sample_rate == 0 {
        String::new()
    } else {
        format!(
            "  {}:{:02}",
            s.duration_ms / 60_000,
            s.duration_ms / 1000 % 60
        )
    };
    let label = match (s.title.as_str(), s.artist.as_str()) {
        ("", _) => s.name.clone(),
        (title, "") => format!("{title}  [{}]", s.name),
        (title, artist) => format!("{title} - {artist}  [{}]", s.name),
    };
    format!("{:>3}. {label}{length}", index + 1)
}

/// The `playlist` text: every song with its title, artist and length.
pub fn playlist(songs: &[SongInfo]) -> String {
    if songs.is_empty() {
        return "the server has no songs".to_string();
    }
    let lines: Vec<String> = songs.iter().enumerate().map(|(i, s)| line(i, s)).collect();
    lines.join("\n")
}

/// The `search` text: the songs that match `words`, or why none is listed.
pub fn search_text(playlist: &[SongInfo], words: &str) -> String {
    if playlist.is_empty() {
        return "the playlist has not arrived from the server yet; type `playlist`".to_string();
    }
    let found = search(playlist, words);
    if found.is_empty() {
        return format!("no song matches `{words}`");
    }
    let mut out = format!("{} song(s) match `{words}`:", found.len());
    for (i, s) in found {
        out.push('\n');
        out.push_str(&line(i, s));
    }
    out
}

/// The line said when several songs fit a `play`: the first few, and how to pick one.
pub fn several(text: &str, found: &[(usize, &SongInfo)]) -> String {
    let mut out = format!(
        "{} songs match `{text}`; play one by its number:",
        found.len()
    );
    for (i, s) in found.iter().take(MAX_LISTED_MATCHES) {
        out.push('\n');
        out.push_str(&line(*i, s));
    }
    if found.len() > MAX_LISTED_MATCHES {
        out.push_str(&format!(
            "\n  ... and {} more (`search {text}` lists them all)",
            found.len() - MAX_LISTED_MATCHES
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(name: &str, title: &str, artist: &str, album: &str) -> SongInfo {
        SongInfo {
            name: name.into(),
            title: title.into(),
            artist: artist.into(),
            album: album.into(),
            sample_rate: 44_100,
            duration_ms: 185_000,
            ..SongInfo::default()
        }
    }

    fn library() -> Vec<SongInfo> {
        vec![
            song(
                "Blue/01 intro.flac",
                "Blue Sweep",
                "The Test Tones",
                "Fixtures",
            ),
            song("red.mp3", "Red Glide", "The Test Tones", "Fixtures"),
            song("green.ogg", "Green Rise", "Other Band", "Elsewhere"),
            song("untagged.wav", "", "", ""),
        ]
    }

    fn name(text: &str) -> SongChoice {
        SongChoice::Name(text.into())
    }

    fn index(r: Resolved<'_>) -> usize {
        match r {
            Resolved::One(i, _) => i,
            other => panic!("not one song: {other:?}"),
        }
    }

    #[test]
    fn a_song_is_named_by_number_file_name_or_words_of_its_tags() {
        let lib = library();
        assert_eq!(index(resolve(&lib, &SongChoice::Number(3))), 2);
        assert_eq!(index(resolve(&lib, &name("red.mp3"))), 1);
        assert_eq!(index(resolve(&lib, &name("RED.MP3"))), 1);
        assert_eq!(index(resolve(&lib, &name("01 intro.flac"))), 0);
        assert_eq!(index(resolve(&lib, &name("blue"))), 0);
        assert_eq!(index(resolve(&lib, &name("other band"))), 2);
        assert_eq!(index(resolve(&lib, &name("tones glide"))), 1);
        assert_eq!(index(resolve(&lib, &name("untagged"))), 3);
        assert_eq!(resolve(&lib, &SongChoice::Number(5)), Resolved::Nothing);
        assert_eq!(resolve(&lib, &name("jazz")), Resolved::Nothing);
    }

    #[test]
    fn several_matches_are_listed_not_guessed() {
        let lib = library();
        let Resolved::Several(found) = resolve(&lib, &name("test tones")) else {
            panic!("two songs are by The Test Tones");
        };
        assert_eq!(
            found.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(
            several("test tones", &found),
            "2 songs match `test tones`; play one by its number:\n  \
             1. Blue Sweep - The Test Tones  [Blue/01 intro.flac]  3:05\n  \
             2. Red Glide - The Test Tones  [red.mp3]  3:05"
        );
    }

    #[test]
    fn the_playlist_shows_title_artist_and_length() {
        assert_eq!(
            playlist(&library()),
            "  1. Blue Sweep - The Test Tones  [Blue/01 intro.flac]  3:05\n  \
             2. Red Glide - The Test Tones  [red.mp3]  3:05\n  \
             3. Green Rise - Other Band  [green.ogg]  3:05\n  \
             4. untagged.wav  3:05"
        );
        assert_eq!(playlist(&[]), "the server has no songs");
    }

    #[test]
    fn search_lists_every_match_or_says_there_is_none() {
        let lib = library();
        assert_eq!(
            search_text(&lib, "FIXTURES"),
            "2 song(s) match `FIXTURES`:\n  \
             1. Blue Sweep - The Test Tones  [Blue/01 intro.flac]  3:05\n  \
             2. Red Glide - The Test Tones  [red.mp3]  3:05"
        );
        assert_eq!(search_text(&lib, "polka"), "no song matches `polka`");
        assert!(search(&lib, "   ").is_empty());
    }
}
