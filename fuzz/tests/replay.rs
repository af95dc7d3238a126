//! Replays one input through one target without the fuzzer, for debugging:
//! `FUZZ_TARGET=sim_group FUZZ_INPUT=path cargo test -p music262-fuzz --test replay -- --nocapture`.

#[test]
fn replay_one_input_named_by_the_environment() {
    let (Ok(target), Ok(input)) = (std::env::var("FUZZ_TARGET"), std::env::var("FUZZ_INPUT"))
    else {
        return;
    };
    let data = std::fs::read(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let (_, f) = music262_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    f(&data);
}
