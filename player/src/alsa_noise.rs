//! ALSA's library messages folded into the error they explain. alsa-lib writes each step of a
//! failed device open to stderr (`ALSA lib confmisc.c:855:(parse_card) cannot find card '0'`,
//! eight lines without a sound card); [`folded`] collects them in a buffer instead, and a
//! failure carries the first of them and how many followed, so the caller says one line.

/// Runs `open` with ALSA's messages of this thread collected instead of printed; an error gets
/// the first message appended (`…; ALSA: cannot find card '0' (and 7 more messages)`).
///
/// The handler stays on the thread afterwards (alsa-lib has no safe way to remove it): later
/// messages of this thread go to the buffer, which the next call empties.
#[cfg(target_os = "linux")]
pub(crate) fn folded<T>(open: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let Ok(buffer) = alsa::Output::local_error_handler() else {
        return open();
    };
    let result = open();
    let said = buffer.borrow().to_string();
    result.map_err(|reason| with_messages(reason, &said))
}

/// Without ALSA there is nothing to fold.
#[cfg(not(target_os = "linux"))]
pub(crate) fn folded<T>(open: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    open()
}

/// `reason` followed by the first of ALSA's messages (each a `function: text` line) and a count
/// of the others.
fn with_messages(reason: String, said: &str) -> String {
    let mut lines = said.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return reason;
    };
    // "parse_card: cannot find card '0'": the function name says nothing to a user.
    let text = first.split_once(": ").map_or(first, |(_, text)| text);
    let reason = reason.trim_end_matches('.');
    match lines.count() {
        0 => format!("{reason}; ALSA: {text}"),
        1 => format!("{reason}; ALSA: {text} (and 1 more message)"),
        more => format!("{reason}; ALSA: {text} (and {more} more messages)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_and_a_count_of_the_rest_follow_the_reason() {
        let said = "parse_card: cannot find card '0'\n\
                    _snd_config_evaluate: function snd_func_card_inum returned error: No such file or directory\n\
                    snd_pcm_open_noupdate: Unknown PCM default\n";
        assert_eq!(
            with_messages("no default device".into(), said),
            "no default device; ALSA: cannot find card '0' (and 2 more messages)"
        );
        assert_eq!(
            with_messages("x".into(), "snd_pcm_open_noupdate: Unknown PCM default\n"),
            "x; ALSA: Unknown PCM default"
        );
        assert_eq!(with_messages("x".into(), ""), "x");
        assert_eq!(
            with_messages("not available.".into(), "f: Unknown PCM default"),
            "not available; ALSA: Unknown PCM default"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_open_keeps_alsas_messages_off_stderr_and_in_its_error() {
        // Opening a PCM that no configuration names makes alsa-lib complain.
        let result: Result<(), String> = folded(|| {
            alsa::PCM::new("music262-no-such-pcm", alsa::Direction::Playback, false)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let reason = result.expect_err("no such PCM");
        assert!(reason.contains("; ALSA: "), "{reason}");
        assert!(reason.contains("music262-no-such-pcm"), "{reason}");
    }
}
