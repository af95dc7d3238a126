//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through each target, so that
//! what the fuzzer once found stays fixed without running the fuzzer.

use std::path::Path;

#[test]
fn every_committed_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut replayed = 0;
    for (name, target) in music262_fuzz::TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("no corpus for {name} in {}", dir.display());
        };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        assert!(!files.is_empty(), "empty corpus for {name}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(
                result.is_ok(),
                "{name}: {} fails (replay with cargo fuzz run {name} {})",
                f.display(),
                f.display()
            );
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} corpus inputs");
}
