//! Fuzz target `wav_decode`: see `music262_fuzz::wav_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| music262_fuzz::wav_decode(data));
