//! `music_client`: see `music_client --help`.

#[tokio::main]
async fn main() {
    // The config file's options first, then the command line's.
    let args = music262::client::config::parse_args(std::env::args_os());
    std::process::exit(music262::client::run(args).await);
}
