//! `music_server`: see `music_server --help`.

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = music262::server::ServerArgs::parse();
    std::process::exit(music262::server::run(args).await);
}
