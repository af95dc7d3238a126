//! `music_client`: see `music_client --help`.

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = music262::client::ClientArgs::parse();
    std::process::exit(music262::client::run(args).await);
}
