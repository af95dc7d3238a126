//! Drift correction: a sound card running fast is slewed back, a large error jumped, an output
//! break re-seeked.

mod harness;

use harness::*;
use sync_core::*;

#[test]
fn drift_correction_absorbs_a_sound_card_running_fast() {
    let mut net = Net::new(&skewed_clocks(2));
    net.nodes[1].player.device_ppm = 120.0;
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(3 * SEC);
    net.command(
        0,
        Command::Play {
            song: Some(song(48_000 * 300)),
            frame: 0,
        },
    )
    .unwrap();
    let mut errors = Vec::new();
    for k in 0..200 {
        net.run_until(4 * SEC + k * 250 * MS);
        if let (Some(a), Some(b)) = (net.frame(0), net.frame(1)) {
            errors.push((a - b) / 48.0 * 1000.0); // microseconds
        }
    }
    let tail = &errors[errors.len() - 40..];
    let worst = tail.iter().cloned().fold(0.0, |m: f64, e| m.max(e.abs()));
    assert!(worst < 30.0, "steady error {worst} us");
    let (rate, _) = net.nodes[1].node.correction_status();
    // The controller settles near -120 ppm plus the clocks' own difference (feed-forward).
    let ff = net.nodes[1].node.sync_status().mapping.rate_ppm;
    assert!((rate - (ff - 120.0)).abs() < 10.0, "rate {rate} ff {ff}");
    // Bounded and not oscillating: after settling, successive errors do not swing.
    assert!(tail.windows(2).all(|w| (w[0] - w[1]).abs() < 10.0));
}

/// Two linked peers playing a long song since 3 s, at 5 s; node 1's player is then moved
/// `frames` ahead (behind when negative) of where it was.
fn two_playing_peers_then_moved(frames: f64) -> Net {
    let mut net = Net::new(&skewed_clocks(2));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(3 * SEC);
    net.command(
        0,
        Command::Play {
            song: Some(song(48_000 * 300)),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(5 * SEC);
    if let Some((f, t0)) = net.nodes[1].player.anchor {
        net.nodes[1].player.anchor = Some((f + frames, t0));
    }
    net
}

#[test]
fn a_large_error_is_corrected_by_a_jump() {
    // 100 ms ahead.
    let mut net = two_playing_peers_then_moved(4_800.0);
    net.run_until(6 * SEC);
    assert_eq!(net.nodes[1].player.jumps, 1);
    let (a, b) = (net.frame(0).unwrap(), net.frame(1).unwrap());
    assert!((a - b).abs() < 2.0, "after the jump: {a} vs {b}");
    assert_eq!(net.nodes[1].node.counters().jumps, 1);
}

/// Two playing peers; node 1's player then comes back from a broken output 8 ms behind, as a
/// sound stream that ran dry does. Returns the net and node 1's error 1 s later, in frames.
fn after_an_output_break(reported: bool) -> (Net, f64) {
    let mut net = two_playing_peers_then_moved(-384.0);
    if reported {
        let at = net.local(1);
        net.nodes[1]
            .node
            .handle_player(at, PlayerReport::OutputBreak { at });
        net.drain(1);
    }
    net.run_until(6 * SEC);
    let error = net.frame(0).unwrap() - net.frame(1).unwrap();
    (net, error)
}

#[test]
fn after_an_output_break_a_few_milliseconds_off_are_re_seeked_at_once() {
    let (net, error) = after_an_output_break(true);
    assert_eq!(net.nodes[1].player.jumps, 1);
    assert!(
        error.abs() < 2.0,
        "{error} frames off a second after the break"
    );
}

#[test]
fn a_few_milliseconds_off_without_an_output_break_are_slewed_not_jumped() {
    let (net, error) = after_an_output_break(false);
    assert_eq!(net.nodes[1].player.jumps, 0);
    // At the 500 ppm limit a second removes half a millisecond of the eight.
    assert!(
        (300.0..384.0).contains(&error),
        "{error} frames off a second later"
    );
}
