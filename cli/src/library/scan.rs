//! Scanning the audio folder: every file under it, in every subfolder, is looked at once; the
//! ones that play become songs named by their path relative to the folder, the others are
//! counted by reason for one summary line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use player::DecodeError;
use transport_grpc::MAX_SONG_BYTES;

use super::{LibrarySong, SongSource, song_info};

/// Extensions of the formats the players decode.
const PLAYABLE: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "m4b", "mp4", "aac", "aif", "aiff", "aifc",
];

/// Extensions of audio formats the players do not decode: named as unsupported rather than
/// as not audio.
const UNSUPPORTED_AUDIO: &[&str] = &[
    "wma", "opus", "ape", "wv", "mpc", "dsf", "dff", "mka", "webm", "ac3", "dts", "amr", "ra",
    "rm", "tta", "spx", "mid", "midi", "caf",
];

/// Folders deeper than this under the audio folder are not entered.
const MAX_DEPTH: usize = 32;

/// Why a file is not a song, as the summary line groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// An audio format the players do not decode.
    Unsupported,
    /// A file of the format its name says that does not decode (cut off, damaged).
    Damaged,
    /// Not an audio file (a picture, a playlist, notes).
    NotAudio,
    /// Bigger than the song size limit.
    TooBig,
    /// A link leading out of the audio folder.
    Outside,
    /// Could not be read.
    Unreadable,
}

impl Skip {
    fn label(self) -> &'static str {
        match self {
            Skip::Unsupported => "unsupported format",
            Skip::Damaged => "damaged",
            Skip::NotAudio => "not audio",
            Skip::TooBig => "over the size limit",
            Skip::Outside => "outside the audio folder",
            Skip::Unreadable => "unreadable",
        }
    }
}

/// What scanning a folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Songs, sorted by name (the path relative to the folder).
    pub songs: Vec<LibrarySong>,
    /// One line per file skipped, saying which and why.
    pub skipped: Vec<String>,
    /// Files skipped, by reason.
    pub counts: BTreeMap<Skip, usize>,
    /// Extensions of the unsupported files (with their dot, lowercase).
    pub unsupported_extensions: BTreeSet<String>,
}

impl Scan {
    /// One line counting the skipped files by reason, as "skipped 3: 2 unsupported format
    /// (.wma), 1 not audio"; `None` when nothing was skipped.
    pub fn summary(&self) -> Option<String> {
        let total: usize = self.counts.values().sum();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(&skip, n)| {
                if skip == Skip::Unsupported && !self.unsupported_extensions.is_empty() {
                    let exts: Vec<&str> = self
                        .unsupported_extensions
                        .iter()
                        .map(String::as_str)
                        .collect();
                    format!("{n} {} ({})", skip.label(), exts.join(", "))
                } else {
                    format!("{n} {}", skip.label())
                }
            })
            .collect();
        Some(format!("skipped {total}: {}", parts.join(", ")))
    }

    fn skip(&mut self, kind: Skip, line: String) {
        *self.counts.entry(kind).or_default() += 1;
        self.skipped.push(line);
    }
}

/// Scans `dir` and its subfolders for audio files. Only files that really live inside `dir`
/// are taken: a symbolic link leading out of it is skipped, so the server never opens a path
/// outside its audio folder; so is a file over [`MAX_SONG_BYTES`] (it is not even read).
/// Hidden files and folders (names starting with a dot) are passed over without a word.
/// `progress(done, total, name)` is called per file.
pub fn scan(dir: &Path, progress: impl FnMut(usize, usize, &str)) -> Result<Scan, String> {
    scan_with_limit(dir, MAX_SONG_BYTES, progress)
}

/// [`scan`] with another song size limit, in bytes.
pub fn scan_with_limit(
    dir: &Path,
    max_song_bytes: u64,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Scan, String> {
    let root = dir
        .canonicalize()
        .map_err(|e| format!("audio folder {}: {e}", dir.display()))?;
    if !root.is_dir() {
        return Err(format!("audio folder {} is not a folder", dir.display()));
    }
    let mut scan = Scan::default();
    let mut files = Vec::new();
    let mut visited = BTreeSet::from([root.clone()]);
    walk(&root, &root, "", 0, &mut visited, &mut files, &mut scan)
        .map_err(|e| format!("audio folder {}: {e}", dir.display()))?;
    files.sort();
    let total = files.len();
    for (i, (name, path)) in files.into_iter().enumerate() {
        progress(i, total, &name);
        take_file(&root, name, &path, max_song_bytes, &mut scan);
    }
    progress(total, total, "");
    Ok(scan)
}

/// Collects the files under `dir` as (name relative to the root, path). Folders are entered
/// once each (a link back up does not loop) and only inside the root.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    visited: &mut BTreeSet<PathBuf>,
    files: &mut Vec<(String, PathBuf)>,
    scan: &mut Scan,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let os_name = entry.file_name();
        let Some(file_name) = os_name.to_str() else {
            let shown = os_name.to_string_lossy();
            scan.skip(
                Skip::Unreadable,
                format!("{prefix}{shown}: skipped, its name is not UTF-8"),
            );
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let name = format!("{prefix}{file_name}");
        let path = entry.path();
        let Ok(real) = path.canonicalize() else {
            scan.skip(Skip::Unreadable, format!("{name}: skipped, a broken link"));
            continue;
        };
        if real.is_dir() {
            if !real.starts_with(root) {
                scan.skip(
                    Skip::Outside,
                    format!("{name}: skipped, it leads outside the audio folder"),
                );
            } else if depth < MAX_DEPTH && visited.insert(real.clone()) {
                walk(
                    root,
                    &real,
                    &format!("{name}/"),
                    depth + 1,
                    visited,
                    files,
                    scan,
                )?;
            }
        } else {
            files.push((name, path));
        }
    }
    Ok(())
}

/// The extension of `name`, lowercase, without its dot.
fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .and_then(|x| x.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Looks at one file: a song, or one skipped line.
fn take_file(root: &Path, name: String, path: &Path, max_song_bytes: u64, scan: &mut Scan) {
    let ext = extension(&name);
    if UNSUPPORTED_AUDIO.contains(&ext.as_str()) {
        scan.unsupported_extensions.insert(format!(".{ext}"));
        scan.skip(
            Skip::Unsupported,
            format!("{name}: skipped, .{ext} is an audio format the players do not decode"),
        );
        return;
    }
    if !PLAYABLE.contains(&ext.as_str()) {
        scan.skip(
            Skip::NotAudio,
            format!("{name}: skipped, not an audio file"),
        );
        return;
    }
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => return scan.skip(Skip::Unreadable, format!("{name}: {e}")),
    };
    if !real.starts_with(root) || !real.is_file() {
        return scan.skip(
            Skip::Outside,
            format!("{name}: skipped, it leads outside the audio folder"),
        );
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.len() > max_song_bytes => {
            return scan.skip(
                Skip::TooBig,
                format!(
                    "{name}: skipped, {} bytes is over the song size limit of {max_song_bytes} \
                     bytes",
                    m.len()
                ),
            );
        }
        Ok(_) => {}
        Err(e) => return scan.skip(Skip::Unreadable, format!("{name}: {e}")),
    }
    let bytes = match std::fs::read(&real) {
        Ok(b) => b,
        Err(e) => return scan.skip(Skip::Unreadable, format!("{name}: {e}")),
    };
    match song_info(&name, &bytes) {
        Ok(info) => scan.songs.push(LibrarySong {
            info,
            source: SongSource::File(real),
        }),
        Err(e @ DecodeError::Unsupported(_)) => {
            scan.unsupported_extensions.insert(format!(".{ext}"));
            scan.skip(Skip::Unsupported, format!("{name}: {e}"));
        }
        Err(e) => scan.skip(Skip::Damaged, format!("{name}: {e}")),
    }
}
