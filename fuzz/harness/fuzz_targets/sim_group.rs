//! Fuzz target `sim_group`: see `music262_fuzz::sim_group`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| music262_fuzz::sim_group(data));
