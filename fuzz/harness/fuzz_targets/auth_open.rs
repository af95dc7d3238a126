//! Fuzz target `auth_open`: see `music262_fuzz::auth_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| music262_fuzz::auth_open(data));
