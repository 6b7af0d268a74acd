//! The `chorus` binary: parses arguments and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    chorus::cli::Cli::parse().run_blocking()
}
