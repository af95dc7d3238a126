//! Compiles `audio_service.proto` and `audio_sync.proto` with protox (a pure-Rust protobuf
//! compiler, so no system `protoc` is needed), generates prost types and tonic client and
//! server stubs, and writes the encoded `FileDescriptorSet` for reflection and tests.

use std::path::PathBuf;

const PROTOS: [&str; 2] = ["audio_service.proto", "audio_sync.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(proto).display()
        );
    }

    let mut compiler = protox::Compiler::new([&manifest_dir])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    std::fs::write(
        out_dir.join("music262_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
