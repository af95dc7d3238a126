//! Fuzz target `legacy_command`: see `music262_fuzz::legacy_command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| music262_fuzz::legacy_command(data));
