//! The render core driven slot by slot without real time: exact start, pause/resume, rate,
//! channels, volume and position reports, checked against the source frames.

use std::sync::Arc;

use player::{
    ChannelMode, Control, PlaybackState, PlayerEvent, RenderConfig, Renderer, Resampling, Song,
    render_core,
};

const ORIGIN: u64 = 1_000_000_000_000;

/// A renderer stepped like a paced sink: consecutive buffers, slot k heard at
/// ORIGIN + k * 1e9 / rate, everything recorded.
struct Rig {
    control: Control,
    renderer: Renderer,
    rate: u32,
    channels: usize,
    slot: u64,
    out: Vec<f32>,
}

impl Rig {
    fn new(rate: u32, channels: u16, resampling: Resampling) -> Self {
        let (control, renderer) = render_core(RenderConfig {
            sink_rate: rate,
            channels,
            resampling,
        });
        Self {
            control,
            renderer,
            rate,
            channels: usize::from(channels),
            slot: 0,
            out: Vec::new(),
        }
    }

    fn slot_ns(&self, k: u64) -> u64 {
        ORIGIN + (u128::from(k) * 1_000_000_000 / u128::from(self.rate)) as u64
    }

    fn slot_of_ns(&self, ns: u64) -> f64 {
        (ns - ORIGIN) as f64 * f64::from(self.rate) / 1e9
    }

    /// Renders `frames` slots in buffers of `block` frames.
    fn run(&mut self, frames: u64, block: usize) {
        let mut left = frames;
        let mut buf = vec![0.0f32; block * self.channels];
        while left > 0 {
            let n = (block as u64).min(left) as usize;
            let at = self.slot_ns(self.slot);
            self.renderer.render(&mut buf[..n * self.channels], at);
            self.out.extend_from_slice(&buf[..n * self.channels]);
            self.slot += n as u64;
            left -= n as u64;
        }
    }

    fn sample(&self, slot: u64, channel: usize) -> f32 {
        self.out[slot as usize * self.channels + channel]
    }
}

/// Deterministic noise, different on each channel: any lost, repeated or swapped frame shows.
fn noise_song(rate: u32, frames: usize) -> Arc<Song> {
    let mut x: u32 = 0x1234_5678;
    let mut samples = Vec::with_capacity(frames * 2);
    for _ in 0..frames * 2 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        samples.push((x as f32 / u32::MAX as f32) - 0.5);
    }
    Arc::new(Song::from_interleaved(rate, 2, samples).unwrap())
}

/// Left is `frame * RAMP`, right its negation: the output value reads back the position.
const RAMP: f32 = 1e-5;
fn ramp_song(rate: u32, frames: usize) -> Arc<Song> {
    let samples: Vec<f32> = (0..frames)
        .flat_map(|i| [i as f32 * RAMP, -(i as f32) * RAMP])
        .collect();
    Arc::new(Song::from_interleaved(rate, 2, samples).unwrap())
}

fn assert_plays(rig: &Rig, song: &Song, slots: std::ops::Range<u64>, first_frame: u64, tol: f32) {
    for (i, slot) in slots.enumerate() {
        let frame = song.frame(first_frame + i as u64).unwrap();
        for (c, &want) in frame.iter().enumerate() {
            let got = rig.sample(slot, c);
            assert!(
                (got - want).abs() <= tol,
                "slot {slot} channel {c}: got {got}, expected frame {} = {}",
                first_frame + i as u64,
                want
            );
        }
    }
}

fn assert_silent(rig: &Rig, slots: std::ops::Range<u64>) {
    for slot in slots {
        for c in 0..rig.channels {
            assert_eq!(
                rig.sample(slot, c),
                0.0,
                "slot {slot} channel {c} should be silent"
            );
        }
    }
}

#[test]
fn start_at_an_instant_puts_the_first_frame_on_that_slot() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 20_000);
    rig.control.load(song.clone());
    // 1234 is not a multiple of the 441-frame buffers: the start lands mid-buffer.
    rig.control.start_at(0, rig.slot_ns(1234));
    rig.run(8000, 441);
    assert_silent(&rig, 0..1233);
    assert_plays(&rig, &song, 1234..8000, 0, 1e-4);
    assert!(rig.control.take_events().is_empty());
}

#[test]
fn start_between_slots_plays_the_fractional_timeline_position() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = ramp_song(48_000, 20_000);
    rig.control.load(song);
    // A quarter of a slot after slot 1000: slot 1000 plays position -0.25.
    let at = rig.slot_ns(1000) + 5_208;
    rig.control.start_at(0, at);
    rig.run(4000, 512);
    for j in 2..3000u64 {
        let expected = (j as f64 - 0.25) as f32 * RAMP;
        let got = rig.sample(1000 + j, 0);
        assert!(
            (got - expected).abs() < 2e-6 * RAMP * j as f32 + 1e-9,
            "slot {}: {got} vs {expected}",
            1000 + j
        );
    }
}

#[test]
fn start_with_a_different_song_rate_follows_the_song_clock() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = ramp_song(44_100, 50_000);
    rig.control.load(song);
    rig.control.start_at(100, rig.slot_ns(777));
    rig.run(10_000, 480);
    for j in 2..9000u64 {
        let position = 100.0 + j as f64 * 44_100.0 / 48_000.0;
        let got = f64::from(rig.sample(777 + j, 0)) / f64::from(RAMP);
        assert!(
            (got - position).abs() < 0.01,
            "slot {}: position {got} vs {position}",
            777 + j
        );
    }
}

#[test]
fn pause_then_resume_loses_and_duplicates_no_frame() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 100_000);
    rig.control.load(song.clone());
    let s0 = 500;
    rig.control.start_at(0, rig.slot_ns(s0));
    rig.control.pause_at(30_000, rig.slot_ns(s0 + 30_000));
    rig.run(s0 + 40_000, 1000);
    assert_eq!(rig.control.state(), PlaybackState::Paused { frame: 30_000 });
    assert_eq!(rig.control.position().unwrap().frame, 30_000.0);
    rig.control.start_at(30_000, rig.slot_ns(s0 + 50_000));
    rig.run(30_000, 1000);
    assert_silent(&rig, 0..s0);
    assert_plays(&rig, &song, s0..s0 + 30_000, 0, 1e-4);
    assert_silent(&rig, s0 + 30_000..s0 + 50_000);
    assert_plays(&rig, &song, s0 + 50_000..s0 + 70_000, 30_000, 1e-4);
    assert_eq!(rig.control.state(), PlaybackState::Playing);
}

#[test]
fn pause_arriving_past_its_frame_stops_at_its_instant_and_holds_that_frame() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 100_000);
    rig.control.load(song.clone());
    rig.control.start_at(0, rig.slot_ns(0));
    rig.run(12_000, 1000);
    // The timeline reached 12000 at this instant, but the group paused at frame 10000.
    rig.control.pause_at(10_000, rig.slot_ns(12_000));
    rig.run(2000, 1000);
    assert_silent(&rig, 12_000..14_000);
    assert_eq!(rig.control.state(), PlaybackState::Paused { frame: 10_000 });
    rig.control.start_at(10_000, rig.slot_ns(15_000));
    rig.run(3000, 1000);
    assert_plays(&rig, &song, 15_000..17_000, 10_000, 1e-4);
}

#[test]
fn pause_before_its_frame_plays_on_to_exactly_that_frame() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 100_000);
    rig.control.load(song.clone());
    rig.control.start_at(0, rig.slot_ns(0));
    // This peer is 1000 frames behind the group: at the pause instant it is at 19000.
    rig.control.pause_at(20_000, rig.slot_ns(19_000));
    rig.run(25_000, 700);
    assert_plays(&rig, &song, 0..20_000, 0, 1e-4);
    assert_silent(&rig, 20_000..25_000);
    assert_eq!(rig.control.state(), PlaybackState::Paused { frame: 20_000 });
}

#[test]
fn late_start_joins_the_timeline_where_it_has_got_to() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 100_000);
    rig.control.load(song.clone());
    rig.run(48_000, 1000);
    // Sent now, but meant to start one second ago: the timeline is at frame 48000.
    rig.control.start_at(0, rig.slot_ns(0));
    rig.run(5000, 1000);
    assert_plays(&rig, &song, 48_000..53_000, 48_000, 1e-4);
    let events = rig.control.take_events();
    assert!(
        matches!(events.as_slice(), [PlayerEvent::LateCommand { scheduled_ns, .. }] if *scheduled_ns == ORIGIN),
        "{events:?}"
    );
}

#[test]
fn a_newer_command_cancels_pending_commands_scheduled_after_it() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    rig.control.load(noise_song(48_000, 100_000));
    rig.control.start_at(0, rig.slot_ns(2000));
    rig.control.stop_at(rig.slot_ns(1000));
    rig.run(6000, 1000);
    assert_silent(&rig, 0..6000);
    assert_eq!(rig.control.state(), PlaybackState::Stopped);
}

#[test]
fn stop_silences_at_its_slot_and_end_of_song_is_reported() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 5000);
    rig.control.load(song.clone());
    rig.control.start_at(0, rig.slot_ns(0));
    rig.control.stop_at(rig.slot_ns(3000));
    rig.run(4000, 256);
    assert_plays(&rig, &song, 0..3000, 0, 1e-4);
    assert_silent(&rig, 3000..4000);
    assert_eq!(rig.control.state(), PlaybackState::Stopped);
    assert_eq!(rig.control.position().unwrap().frame, 0.0);

    rig.control.start_at(0, rig.slot_ns(4000));
    rig.run(6000, 256);
    assert_plays(&rig, &song, 4000..9000, 0, 1e-4);
    assert_silent(&rig, 9000..10_000);
    assert_eq!(rig.control.state(), PlaybackState::Stopped);
    let events = rig.control.take_events();
    let end = rig.slot_ns(9000);
    assert!(
        matches!(events.as_slice(), [PlayerEvent::EndOfSong { instant_ns, song_generation: 1 }] if instant_ns.abs_diff(end) <= 1),
        "{events:?}"
    );
}

#[test]
fn rate_change_of_500_ppm_consumes_500_ppm_more_source_frames() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    rig.control.load(ramp_song(48_000, 48_000 * 25));
    rig.control.start_at(0, rig.slot_ns(0));
    rig.run(48_000, 480);
    let before = rig.control.position().unwrap();
    rig.control.set_rate_ppm(500.0);
    rig.run(48_000 * 20, 480);
    let after = rig.control.position().unwrap();
    let slots = rig.slot_of_ns(after.instant_ns) - rig.slot_of_ns(before.instant_ns);
    let consumed = after.frame - before.frame;
    let ppm = (consumed / slots - 1.0) * 1e6;
    assert!(
        (ppm - 500.0).abs() < 1.0,
        "consumed {consumed} source frames in {slots} slots: {ppm} ppm"
    );
    // The audio itself agrees: the ramp's value at the last slot reads back its position.
    let last = rig.slot - 1;
    let heard = f64::from(rig.sample(last, 0)) / f64::from(RAMP);
    let expected = 48_000.0 + (last - 48_000) as f64 * 1.0005;
    assert!(
        (heard - expected).abs() < 2.0,
        "heard {heard}, expected {expected}"
    );
}

#[test]
fn rate_changes_are_smooth_without_clicks() {
    let rate = 48_000;
    let freq = 1000.0f64;
    let samples: Vec<f32> = (0..rate as usize * 4)
        .flat_map(|i| {
            let s = (0.8 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                as f32;
            [s, s]
        })
        .collect();
    let mut rig = Rig::new(rate, 2, Resampling::Sinc);
    rig.control
        .load(Arc::new(Song::from_interleaved(rate, 2, samples).unwrap()));
    rig.control.start_at(0, rig.slot_ns(0));
    rig.run(24_000, 333);
    for ppm in [1000.0, -1000.0, 0.0, 1000.0] {
        rig.control.set_rate_ppm(ppm);
        rig.run(24_000, 333);
    }
    // A sine's largest step between samples is 2*pi*f/fs*A; a click would exceed it.
    let max_step = 2.0 * std::f64::consts::PI * freq / f64::from(rate) * 0.8 * 1.01;
    for slot in 200..rig.slot - 1 {
        let step = f64::from((rig.sample(slot + 1, 0) - rig.sample(slot, 0)).abs());
        assert!(step <= max_step, "slot {slot}: step {step} > {max_step}");
    }
}

#[test]
fn channel_selection_and_volume_do_what_they_say() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    let song = noise_song(48_000, 100_000);
    rig.control.load(song.clone());
    rig.control.start_at(0, rig.slot_ns(0));
    rig.run(1000, 500);
    rig.control.set_channel(ChannelMode::Left);
    rig.run(1000, 500);
    rig.control.set_channel(ChannelMode::Right);
    rig.run(1000, 500);
    rig.control.set_channel(ChannelMode::Both);
    rig.control.set_volume(0.25);
    rig.run(2000, 500);
    for slot in 0..5000u64 {
        let frame = song.frame(slot).unwrap();
        let (l, r) = (rig.sample(slot, 0), rig.sample(slot, 1));
        let (el, er) = match slot {
            0..1000 => (frame[0], frame[1]),
            1000..2000 => (frame[0], frame[0]),
            2000..3000 => (frame[1], frame[1]),
            3000..3480 => continue, // the volume glides for 10 ms
            _ => (frame[0] * 0.25, frame[1] * 0.25),
        };
        assert!(
            (l - el).abs() < 1e-4 && (r - er).abs() < 1e-4,
            "slot {slot}: ({l}, {r}) vs ({el}, {er})"
        );
    }
}

#[test]
fn mono_output_mixes_and_mono_songs_fill_both_channels() {
    let mut mono_out = Rig::new(48_000, 1, Resampling::Cubic);
    let song = noise_song(48_000, 10_000);
    mono_out.control.load(song.clone());
    mono_out.control.start_at(0, mono_out.slot_ns(0));
    mono_out.run(1000, 100);
    for slot in 0..1000u64 {
        let f = song.frame(slot).unwrap();
        assert!((mono_out.out[slot as usize] - 0.5 * (f[0] + f[1])).abs() < 1e-4);
    }

    let mono_song = Arc::new(Song::from_interleaved(48_000, 1, vec![0.3f32; 5000]).unwrap());
    let mut stereo_out = Rig::new(48_000, 2, Resampling::Cubic);
    stereo_out.control.load(mono_song);
    stereo_out.control.start_at(0, stereo_out.slot_ns(0));
    stereo_out.run(1000, 100);
    for slot in 10..1000 {
        assert!((stereo_out.sample(slot, 0) - 0.3).abs() < 1e-5);
        assert!((stereo_out.sample(slot, 1) - 0.3).abs() < 1e-5);
    }
}

#[test]
fn position_reports_match_what_was_written() {
    for resampling in [Resampling::Cubic, Resampling::Sinc] {
        let mut rig = Rig::new(48_000, 2, resampling);
        rig.control.load(ramp_song(44_100, 44_100 * 10));
        rig.control.start_at(20_000, rig.slot_ns(300));
        let mut checked = 0;
        for (i, ppm) in [0.0, 800.0, -400.0, 0.0]
            .into_iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            rig.control.set_rate_ppm(ppm);
            rig.run(2400, 480);
            let report = rig.control.position().unwrap();
            if i == 0 {
                continue;
            }
            assert_eq!(report.state, PlaybackState::Playing);
            let slot = rig.slot_of_ns(report.instant_ns).round() as u64;
            let heard = f64::from(rig.sample(slot, 0)) / f64::from(RAMP);
            // Sinc's DC gain (1 + 3e-6) shows on a ramp of values up to ~1.
            assert!(
                (heard - report.frame).abs() < 0.5,
                "{resampling:?}: slot {slot} heard {heard}, reported {}",
                report.frame
            );
            checked += 1;
        }
        assert_eq!(checked, 39);
    }
}

#[test]
fn output_breaks_noted_by_the_sink_are_counted_for_the_control_side() {
    let mut rig = Rig::new(48_000, 2, Resampling::Cubic);
    assert_eq!(rig.control.output_breaks(), 0);
    rig.renderer.note_output_break();
    rig.renderer.note_output_break();
    assert_eq!(rig.control.output_breaks(), 2);
}
