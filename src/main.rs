//! The `chorus` binary: parses arguments, starts tracing, and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = chorus::cli::Cli::parse();
    chorus::cli::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chorus: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli.run())
}
