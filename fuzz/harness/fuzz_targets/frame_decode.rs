//! Fuzz target `frame_decode`: see `music262_fuzz::frame_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| music262_fuzz::frame_decode(data));
