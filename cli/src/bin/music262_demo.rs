//! `music262_demo`: see `music262_demo --help`.

use clap::Parser;

fn main() {
    let args = music262::demo::DemoArgs::parse();
    std::process::exit(music262::demo::run(args));
}
