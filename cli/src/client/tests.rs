//! Tests of `music_client`'s options and start-up pieces (in `mod.rs`).

use super::*;

#[test]
fn web_defaults_to_loopback_8080_when_given_without_an_address() {
    let args = ClientArgs::try_parse_from(["music_client"]).unwrap();
    assert_eq!(args.web, None);
    let args = ClientArgs::try_parse_from(["music_client", "--web"]).unwrap();
    assert_eq!(args.web, Some("127.0.0.1:8080".parse().unwrap()));
    let args = ClientArgs::try_parse_from(["music_client", "--web", "0.0.0.0:9000"]).unwrap();
    assert_eq!(args.web, Some("0.0.0.0:9000".parse().unwrap()));
    assert!(ClientArgs::try_parse_from(["music_client", "--web", "nowhere"]).is_err());
}

#[test]
fn latency_option_takes_milliseconds_within_range() {
    let args = ClientArgs::try_parse_from(["music_client", "--latency-ms", "180"]).unwrap();
    assert_eq!(args.latency_ms, Some(180.0));
    let err = ClientArgs::try_parse_from(["music_client", "--latency-ms", "5000"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("latency goes from 0 to 2000 ms"), "{err}");
}

#[test]
fn audio_nice_takes_a_nice_value_from_minus_20_to_19() {
    let args = ClientArgs::try_parse_from(["music_client"]).unwrap();
    assert_eq!(args.audio_nice, None);
    for (text, nice) in [("-11", -11), ("0", 0), ("19", 19), ("-20", -20)] {
        let args = ClientArgs::try_parse_from(["music_client", "--audio-nice", text]).unwrap();
        assert_eq!(args.audio_nice, Some(nice));
    }
    for bad in ["-21", "20", "high"] {
        assert!(
            ClientArgs::try_parse_from(["music_client", "--audio-nice", bad]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn device_buffer_option_takes_milliseconds_from_1_to_1000() {
    let args = ClientArgs::try_parse_from(["music_client"]).unwrap();
    assert_eq!(args.device_buffer_ms, None);
    let args = ClientArgs::try_parse_from(["music_client", "--device-buffer-ms", "40"]).unwrap();
    assert_eq!(args.device_buffer_ms, Some(40.0));
    for bad in ["0", "1500", "-5", "fast", "NaN"] {
        let arg = format!("--device-buffer-ms={bad}");
        let err = ClientArgs::try_parse_from(["music_client", arg.as_str()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected milliseconds from 1 to 1000"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn device_timing_option_takes_callbacks_or_reported_and_defaults_to_callbacks() {
    let args = ClientArgs::try_parse_from(["music_client"]).unwrap();
    assert_eq!(args.device_timing, None);
    let sink = SinkSpec::Device(None);
    assert_eq!(
        player_config(&args, &sink).device_timing,
        DeviceTiming::Callbacks
    );
    for (text, timing) in [
        ("callbacks", DeviceTiming::Callbacks),
        ("reported", DeviceTiming::Reported),
    ] {
        let args = ClientArgs::try_parse_from(["music_client", "--device-timing", text]).unwrap();
        assert_eq!(args.device_timing, Some(timing));
        assert_eq!(player_config(&args, &sink).device_timing, timing);
    }
}

#[test]
fn a_bad_device_timing_is_a_one_line_error_naming_the_choices() {
    let err = ClientArgs::try_parse_from(["music_client", "--device-timing", "timeline"])
        .unwrap_err()
        .to_string();
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains("--device-timing")
            && first.contains("expected \"callbacks\" or \"reported\""),
        "{err}"
    );
}

#[test]
fn device_probe_option_names_the_file_for_the_player() {
    let args = ClientArgs::try_parse_from(["music_client"]).unwrap();
    assert_eq!(player_config(&args, &SinkSpec::Null).device_probe, None);
    let args =
        ClientArgs::try_parse_from(["music_client", "--device-probe", "/tmp/a.csv"]).unwrap();
    assert_eq!(
        player_config(&args, &SinkSpec::Device(None)).device_probe,
        Some(PathBuf::from("/tmp/a.csv"))
    );
    let err = ClientArgs::try_parse_from(["music_client", "--device-probe", ""])
        .unwrap_err()
        .to_string();
    assert!(
        err.lines()
            .next()
            .unwrap_or_default()
            .contains("--device-probe"),
        "{err}"
    );
}

#[test]
fn device_options_with_another_sink_are_refused_naming_the_option() {
    for (option, value) in [
        ("--device-buffer-ms", "40"),
        ("--audio-nice", "-5"),
        ("--device-timing", "reported"),
        ("--device-probe", "/tmp/a.csv"),
    ] {
        let args = ClientArgs::try_parse_from(["music_client", option, value]).unwrap();
        assert_eq!(check_device_options(&args, &SinkSpec::Device(None)), Ok(()));
        assert_eq!(
            check_device_options(&args, &SinkSpec::Null),
            Err(format!("{option} is for --sink device, not null"))
        );
    }
    let args = ClientArgs::try_parse_from(["music_client"]).unwrap();
    assert_eq!(check_device_options(&args, &SinkSpec::Null), Ok(()));
}

#[test]
fn diagnostic_options_are_hidden_from_help_and_the_environment_lists_what_is_read() {
    use clap::CommandFactory;
    let help = ClientArgs::command().render_long_help().to_string();
    for hidden in ["--device-timing", "--device-probe", "MUSIC262_DEVICE"] {
        assert!(!help.contains(hidden), "{hidden} in {help}");
    }
    for var in [
        crate::env::CLOCK_OFFSET_MS,
        crate::env::CLOCK_DRIFT_PPM,
        crate::env::CLOCK_STEP_AT_S,
        crate::env::CLOCK_STEP_MS,
        crate::env::GROUP_KEY,
        crate::env::LOG_FILTER,
    ] {
        assert!(help.contains(var), "{var} missing from {help}");
    }
}

#[test]
fn help_says_where_the_config_file_and_the_state_directory_are() {
    use clap::CommandFactory;
    let help = ClientArgs::command().render_long_help().to_string();
    for needle in [
        "~/.config/music262/client.toml",
        "~/.local/state/music262/client-PORT",
        "--config",
        "--state-dir",
        "--group",
        "--no-discovery",
    ] {
        assert!(help.contains(needle), "{needle} missing from {help}");
    }
}
