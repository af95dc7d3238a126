//! The process environment, read in this one module: the rest of the crate is handed typed
//! values. `music_client` reads the group key, the log filter and the clock skew that makes
//! several clients on one host behave like separate machines; `music_server` reads the log filter.
//! Every read goes through a lookup closure, so tests pass a map instead of changing the
//! process environment.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::clock::{ClockSkew, ClockStep};

/// The group key (see `music_client --group-key`).
pub const GROUP_KEY: &str = "MUSIC262_GROUP_KEY";
/// The log filter (`tracing_subscriber::EnvFilter` directives, e.g. `debug`).
pub const LOG_FILTER: &str = "RUST_LOG";
/// Artificial clock offset in milliseconds (may be negative, fractional).
pub const CLOCK_OFFSET_MS: &str = "MUSIC262_CLOCK_OFFSET_MS";
/// Artificial clock drift in parts per million (may be negative).
pub const CLOCK_DRIFT_PPM: &str = "MUSIC262_CLOCK_DRIFT_PPM";
/// Seconds after start at which the sync clock steps (with [`CLOCK_STEP_MS`]).
pub const CLOCK_STEP_AT_S: &str = "MUSIC262_CLOCK_STEP_AT_S";
/// Size of the one-off forward step of the sync clock, in milliseconds.
pub const CLOCK_STEP_MS: &str = "MUSIC262_CLOCK_STEP_MS";

/// The host name, the default room name (`music_client --name`); else the kernel's.
pub const HOST_NAME: &str = "HOSTNAME";
/// Where Linux tells the host name when [`HOST_NAME`] is not exported.
const KERNEL_HOST_NAME: &str = "/proc/sys/kernel/hostname";
/// Folder of per-user configuration files (XDG); `$HOME/.config` when unset.
pub const CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// Folder of per-user state kept across restarts (XDG); `$HOME/.local/state` when unset.
pub const STATE_HOME: &str = "XDG_STATE_HOME";
/// The user's home folder, under which the XDG folders default.
pub const HOME: &str = "HOME";

/// Variables that earlier builds read and that are now options, with the option to use: a
/// client started with one of them set says so instead of ignoring it in silence.
pub const RETIRED: [(&str, &str); 2] = [
    ("MUSIC262_DEVICE_TIMING", "--device-timing reported"),
    ("MUSIC262_DEVICE_PROBE", "--device-probe PATH"),
];

/// Looks up one variable: [`process`] in production, a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process environment as a [`Lookup`].
pub fn process(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Why the environment could not be used. Display is one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    /// A variable that does not parse.
    #[error("{var}=`{value}` is not a number")]
    NotANumber {
        /// The variable.
        var: &'static str,
        /// What it holds.
        value: String,
    },
    /// A step that the clock contract forbids or that has no instant.
    #[error("{CLOCK_STEP_MS}=`{value}`: {why}")]
    BadStep {
        /// What the step variable holds.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A variable whose value is not text.
    #[error("{0} is not valid UTF-8")]
    NotText(&'static str),
}

/// What `music_client` takes from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEnv {
    /// [`GROUP_KEY`], if set (even empty: an empty key is refused, not ignored).
    pub group_key: Option<String>,
    /// [`LOG_FILTER`], if set and text.
    pub log_filter: Option<String>,
    /// The sync clock's skew and step.
    pub skew: ClockSkew,
    /// One line for each [`RETIRED`] variable that is set.
    pub retired: Vec<String>,
    /// The host name as a room name (see [`host_name`]).
    pub host_name: Option<String>,
    /// Where the state directories of clients go by default (see [`state_home`]).
    pub state_home: Option<PathBuf>,
}

impl ClientEnv {
    /// Reads every variable of the client through `get`.
    pub fn read(get: Lookup<'_>) -> Result<ClientEnv, EnvError> {
        Ok(ClientEnv {
            group_key: text(GROUP_KEY, get)?,
            log_filter: log_filter(get),
            skew: clock_skew(get)?,
            retired: RETIRED
                .iter()
                .filter(|(var, _)| get(var).is_some())
                .map(|(var, option)| {
                    format!("warning: {var} is no longer read; use the option {option}")
                })
                .collect(),
            host_name: host_name(get),
            state_home: state_home(get),
        })
    }
}

/// The host name as a room name: [`HOST_NAME`] if exported, else the kernel's; sanitised as a
/// peer's name is (`sync_core::room_name`), `None` when neither gives one.
pub fn host_name(get: Lookup<'_>) -> Option<String> {
    let exported = get(HOST_NAME).and_then(|v| v.into_string().ok());
    exported
        .or_else(|| std::fs::read_to_string(KERNEL_HOST_NAME).ok())
        .and_then(|h| sync_core::room_name(&h))
}

/// `$XDG_CONFIG_HOME`, else `$HOME/.config`; `None` when neither is an absolute path.
pub fn config_home(get: Lookup<'_>) -> Option<PathBuf> {
    xdg_home(CONFIG_HOME, ".config", get)
}

/// `$XDG_STATE_HOME`, else `$HOME/.local/state`; `None` when neither is an absolute path.
pub fn state_home(get: Lookup<'_>) -> Option<PathBuf> {
    xdg_home(STATE_HOME, ".local/state", get)
}

/// An XDG base folder: the variable when it holds an absolute path (the specification says a
/// relative one is ignored), else `fallback` under the home folder.
fn xdg_home(var: &str, fallback: &str, get: Lookup<'_>) -> Option<PathBuf> {
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    get(var)
        .and_then(absolute)
        .or_else(|| get(HOME).and_then(absolute).map(|home| home.join(fallback)))
}

/// [`LOG_FILTER`], if set and text (anything else leaves the default level, as
/// `EnvFilter::try_from_default_env` did).
pub fn log_filter(get: Lookup<'_>) -> Option<String> {
    get(LOG_FILTER).and_then(|v| v.into_string().ok())
}

fn text(var: &'static str, get: Lookup<'_>) -> Result<Option<String>, EnvError> {
    get(var)
        .map(|v| v.into_string().map_err(|_| EnvError::NotText(var)))
        .transpose()
}

/// A number of milliseconds, ppm or seconds: 0 when unset or blank.
fn number(var: &'static str, get: Lookup<'_>) -> Result<f64, EnvError> {
    match text(var, get)? {
        None => Ok(0.0),
        Some(v) if v.trim().is_empty() => Ok(0.0),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or(EnvError::NotANumber { var, value: v }),
    }
}

/// The skew and step of the sync clock. A step of 0 ms (or none) is no step, whatever
/// [`CLOCK_STEP_AT_S`] says; a step needs its instant and goes only forward, because a
/// clock never decreases.
pub fn clock_skew(get: Lookup<'_>) -> Result<ClockSkew, EnvError> {
    let offset_ms = number(CLOCK_OFFSET_MS, get)?;
    let drift_ppm = number(CLOCK_DRIFT_PPM, get)?;
    let step_ms = number(CLOCK_STEP_MS, get)?;
    let step = if step_ms == 0.0 {
        None
    } else {
        let value = text(CLOCK_STEP_MS, get)?.unwrap_or_default();
        if step_ms < 0.0 {
            return Err(EnvError::BadStep {
                value,
                why: "a clock can only step forward",
            });
        }
        if text(CLOCK_STEP_AT_S, get)?.is_none_or(|v| v.trim().is_empty()) {
            return Err(EnvError::BadStep {
                value,
                why: "needs MUSIC262_CLOCK_STEP_AT_S (when, in seconds after start)",
            });
        }
        Some(ClockStep {
            at_s: number(CLOCK_STEP_AT_S, get)?.max(0.0),
            ms: step_ms,
        })
    };
    Ok(ClockSkew {
        offset_ms,
        drift_ppm,
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup over `pairs` only.
    fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn the_client_reads_each_of_its_variables() {
        let env = ClientEnv::read(&map(&[
            (GROUP_KEY, "a group key of some length"),
            (LOG_FILTER, "sync_core=trace"),
            (CLOCK_OFFSET_MS, "-1500.5"),
            (CLOCK_DRIFT_PPM, " 200 "),
            (CLOCK_STEP_AT_S, "14"),
            (CLOCK_STEP_MS, "500"),
            (HOST_NAME, "kitchen-pi\n"),
        ]))
        .unwrap();
        assert_eq!(
            env,
            ClientEnv {
                group_key: Some("a group key of some length".into()),
                log_filter: Some("sync_core=trace".into()),
                skew: ClockSkew {
                    offset_ms: -1500.5,
                    drift_ppm: 200.0,
                    step: Some(ClockStep {
                        at_s: 14.0,
                        ms: 500.0
                    }),
                },
                retired: vec![],
                host_name: Some("kitchen-pi".into()),
                state_home: None,
            }
        );
    }

    #[test]
    fn xdg_folders_come_from_their_variable_or_default_under_home() {
        let both = map(&[(STATE_HOME, "/s"), (CONFIG_HOME, "/c"), (HOME, "/h")]);
        assert_eq!(state_home(&both), Some(PathBuf::from("/s")));
        assert_eq!(config_home(&both), Some(PathBuf::from("/c")));
        let home = map(&[(STATE_HOME, "relative"), (HOME, "/h")]);
        assert_eq!(state_home(&home), Some(PathBuf::from("/h/.local/state")));
        assert_eq!(config_home(&home), Some(PathBuf::from("/h/.config")));
        assert_eq!(state_home(&map(&[])), None);
    }

    #[test]
    fn an_empty_environment_gives_no_key_no_filter_and_an_unskewed_clock() {
        let env = ClientEnv::read(&map(&[])).unwrap();
        assert_eq!(env.group_key, None);
        assert_eq!(env.log_filter, None);
        assert_eq!(env.skew, ClockSkew::default());
        assert!(env.retired.is_empty());
        let blank = clock_skew(&map(&[(CLOCK_OFFSET_MS, " "), (CLOCK_DRIFT_PPM, "")]));
        assert_eq!(blank.unwrap(), ClockSkew::default());
    }

    #[test]
    fn an_empty_group_key_is_kept_so_that_it_is_refused() {
        let env = ClientEnv::read(&map(&[(GROUP_KEY, "")])).unwrap();
        assert_eq!(env.group_key, Some(String::new()));
    }

    #[test]
    fn a_skew_that_is_not_a_number_is_a_one_line_error_naming_the_variable() {
        let e = clock_skew(&map(&[(CLOCK_DRIFT_PPM, "fast")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MUSIC262_CLOCK_DRIFT_PPM=`fast` is not a number"
        );
        let e = clock_skew(&map(&[(CLOCK_OFFSET_MS, "inf")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MUSIC262_CLOCK_OFFSET_MS=`inf` is not a number"
        );
        let e = ClientEnv::read(&map(&[(CLOCK_STEP_AT_S, "soon"), (CLOCK_STEP_MS, "5")]));
        assert_eq!(
            e.unwrap_err().to_string(),
            "MUSIC262_CLOCK_STEP_AT_S=`soon` is not a number"
        );
    }

    #[test]
    fn a_backward_step_or_a_step_without_an_instant_is_refused() {
        let back = map(&[(CLOCK_STEP_AT_S, "1"), (CLOCK_STEP_MS, "-5")]);
        assert_eq!(
            clock_skew(&back).unwrap_err().to_string(),
            "MUSIC262_CLOCK_STEP_MS=`-5`: a clock can only step forward"
        );
        let e = clock_skew(&map(&[(CLOCK_STEP_MS, "5")])).unwrap_err();
        assert!(
            e.to_string().contains("needs MUSIC262_CLOCK_STEP_AT_S"),
            "{e}"
        );
    }

    #[test]
    fn no_step_leaves_the_step_instant_unread() {
        let skew = clock_skew(&map(&[(CLOCK_STEP_AT_S, "soon"), (CLOCK_STEP_MS, "0")]));
        assert_eq!(skew.unwrap().step, None);
        let early = clock_skew(&map(&[(CLOCK_STEP_AT_S, "-3"), (CLOCK_STEP_MS, "5")]));
        assert_eq!(early.unwrap().step, Some(ClockStep { at_s: 0.0, ms: 5.0 }));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_that_is_not_text_is_refused_and_a_log_filter_that_is_not_text_is_ignored() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |name: &str| {
            [GROUP_KEY, LOG_FILTER]
                .contains(&name)
                .then(|| OsString::from_vec(vec![0xff, 0xfe]))
        };
        assert_eq!(
            ClientEnv::read(&bytes).unwrap_err().to_string(),
            "MUSIC262_GROUP_KEY is not valid UTF-8"
        );
        assert_eq!(log_filter(&bytes), None);
    }

    #[test]
    fn a_retired_variable_gets_a_line_naming_its_option() {
        let env = ClientEnv::read(&map(&[
            ("MUSIC262_DEVICE_TIMING", "reported"),
            ("MUSIC262_DEVICE_PROBE", "/tmp/callbacks.csv"),
        ]))
        .unwrap();
        assert_eq!(
            env.retired,
            [
                "warning: MUSIC262_DEVICE_TIMING is no longer read; use the option \
                 --device-timing reported",
                "warning: MUSIC262_DEVICE_PROBE is no longer read; use the option \
                 --device-probe PATH",
            ]
        );
    }
}
