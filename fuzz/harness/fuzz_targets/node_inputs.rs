//! Fuzz target `node_inputs`: see `music262_fuzz::node_inputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| music262_fuzz::node_inputs(data));
