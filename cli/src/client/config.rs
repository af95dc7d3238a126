//! The config file of `music_client`: every option, in TOML, under its long name
//! (`latency_ms = 180` or `latency-ms = 180`, `web = "0.0.0.0:8080"`, `no_discovery = true`).
//! Its options come first and the command line's after them, so the command line wins. A bad
//! file is one line naming the file and the line, said before anything starts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory, Parser};
use serde::Deserialize;
use toml::Spanned;

use super::ClientArgs;

/// Name of the config file in `<config home>/music262/`.
pub const FILE: &str = "client.toml";

/// Options that make no sense in the file.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

/// The config file used when `--config` is not given: `<config home>/music262/client.toml`.
pub fn default_path(config_home: Option<&Path>) -> Option<PathBuf> {
    config_home.map(|home| home.join("music262").join(FILE))
}

/// Parses `music_client`'s arguments with its config file: clap's own errors (and `--help`)
/// end the process as clap does; a bad config file is one line on standard error and exit
/// code 2.
pub fn parse_args(argv: impl IntoIterator<Item = OsString>) -> ClientArgs {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let home = crate::env::config_home(&crate::env::process);
    let full = match with_config(&argv, home.as_deref()) {
        Ok(full) => full,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    ClientArgs::try_parse_from(full).unwrap_or_else(|e| e.exit())
}

/// `argv` with the config file's options put before its own: the file named by `--config`
/// (which must exist), else the default one if it exists.
pub fn with_config(argv: &[OsString], config_home: Option<&Path>) -> Result<Vec<OsString>, String> {
    let (path, must_exist) = match given_config(argv)? {
        Some(path) => (path, true),
        None => match default_path(config_home) {
            Some(path) => (path, false),
            None => return Ok(argv.to_vec()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok(argv.to_vec());
        }
        Err(e) => return Err(format!("config file {}: {e}", path.display())),
    };
    let options = file_options(&path, &text)?;
    let mut full = argv.iter().take(1).cloned().collect::<Vec<_>>();
    full.extend(options);
    full.extend(argv.iter().skip(1).cloned());
    Ok(full)
}

/// The value of `--config PATH` or `--config=PATH` on the command line.
fn given_config(argv: &[OsString]) -> Result<Option<PathBuf>, String> {
    let mut found = None;
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            let path = args.next().ok_or("--config needs a file path")?;
            found = Some(PathBuf::from(path));
        } else if let Some(path) = text.strip_prefix("--config=") {
            found = Some(PathBuf::from(path));
        }
    }
    Ok(found)
}

/// The file's options as command-line arguments, each checked alone so that an error names
/// its line.
fn file_options(path: &Path, text: &str) -> Result<Vec<OsString>, String> {
    let table: Vec<(Spanned<String>, Spanned<toml::Value>)> = toml::from_str::<Entries>(text)
        .map_err(|e| toml_error(path, text, &e))?
        .0;
    let command = ClientArgs::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let at = |msg: String| {
            format!(
                "{}:{}: {msg}",
                path.display(),
                line_of(text, key.span().start)
            )
        };
        let long = key.get_ref().replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .filter(|_| !NOT_IN_FILE.contains(&long.as_str()))
            .ok_or_else(|| {
                at(format!(
                    "unknown option `{}` (see music_client --help)",
                    key.get_ref()
                ))
            })?;
        let optional_value = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        let flag = matches!(arg.get_action(), ArgAction::SetTrue) || optional_value;
        let args: Vec<String> = match value.get_ref() {
            toml::Value::Boolean(true) if flag => vec![format!("--{long}")],
            toml::Value::Boolean(false) if flag => vec![],
            toml::Value::Array(items) => items
                .iter()
                .map(|v| scalar(v).map(|v| format!("--{long}={v}")))
                .collect::<Option<_>>()
                .ok_or_else(|| at(format!("`{}` takes plain values", key.get_ref())))?,
            v => vec![format!(
                "--{long}={}",
                scalar(v).ok_or_else(|| at(format!("`{}` takes a plain value", key.get_ref())))?
            )],
        };
        // Each option alone, so that clap's complaint is tied to this line.
        let alone = std::iter::once("music_client".to_string()).chain(args.iter().cloned());
        if let Err(e) = ClientArgs::try_parse_from(alone) {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            return Err(at(first.trim_start_matches("error: ").to_string()));
        }
        out.extend(args.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// The file's keys in their order, with where each stands.
struct Entries(Vec<(Spanned<String>, Spanned<toml::Value>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of options")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A TOML value as the text of an option's value: strings, numbers; nothing else.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One line for a TOML error: the file, the line and the message.
pub fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let line = e.span().map_or(1, |s| line_of(text, s.start));
    let message = e
        .message()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    format!("{}:{line}: {message}", path.display())
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("music_client")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// A config file with `text` in a fresh folder, and the folder.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn parse(path: &Path, args: &[&str]) -> Result<ClientArgs, String> {
        let mut a = vec!["--config", path.to_str().unwrap()];
        a.extend_from_slice(args);
        let full = with_config(&argv(&a), None)?;
        ClientArgs::try_parse_from(full).map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_sets_options_and_the_command_line_overrides_them() {
        let (_d, path) =
            file("latency_ms = 180\nmax-links = 4\nserver = \"10.0.0.2:50051\"\nweb = true\n");
        let args = parse(&path, &[]).unwrap();
        assert_eq!(args.latency_ms, Some(180.0));
        assert_eq!(args.max_links, 4);
        assert_eq!(args.server.as_deref(), Some("10.0.0.2:50051"));
        assert_eq!(args.web, Some("127.0.0.1:8080".parse().unwrap()));
        let args = parse(&path, &["--latency-ms", "40", "--web", "0.0.0.0:9000"]).unwrap();
        assert_eq!(args.latency_ms, Some(40.0));
        assert_eq!(args.web, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(args.max_links, 4);
    }

    #[test]
    fn a_bad_file_is_one_line_naming_the_file_and_the_line() {
        for (text, line, what) in [
            (
                "max_links = 4\nlatency_ms = 5000\n",
                2,
                "latency goes from 0 to 2000 ms",
            ),
            ("\n\nvolume_knob = 3\n", 3, "unknown option `volume_knob`"),
            ("server = [1, {a = 2}]\n", 1, "takes plain values"),
            ("max_links = 4\nmax_links = 5\n", 2, "duplicate key"),
            ("latency_ms = \n", 1, ""),
            ("config = \"other.toml\"\n", 1, "unknown option `config`"),
        ] {
            let (_d, path) = file(text);
            let e = parse(&path, &[]).unwrap_err();
            let want = format!("{}:{line}: ", path.display());
            assert!(e.starts_with(&want) && e.contains(what), "{text:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn a_named_file_must_exist_and_the_default_one_may_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = parse(&missing, &[]).unwrap_err();
        assert!(e.contains("nope.toml"), "{e}");
        let full = with_config(&argv(&["--max-links", "3"]), Some(dir.path())).unwrap();
        assert_eq!(full, argv(&["--max-links", "3"]));
        let home = dir.path();
        std::fs::create_dir_all(home.join("music262")).unwrap();
        std::fs::write(home.join("music262").join(FILE), "max_links = 2\n").unwrap();
        let full = with_config(&argv(&[]), Some(home)).unwrap();
        assert_eq!(full, argv(&["--max-links=2"]));
    }
}
