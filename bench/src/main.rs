//! `spate-bench`: parses the command line and runs it (see `spate_bench::app`). Exit code 0
//! on success, 1 when a run failed or counted failed records, 2 for a usage error.

use std::process::ExitCode;

fn main() -> ExitCode {
    let command_line = <spate_bench::cli::CommandLine as clap::Parser>::parse();
    // Fix the clock epoch before any thread takes a timestamp.
    let _ = spate_bench::stats::epoch();
    match spate_bench::app::run(command_line.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("spate-bench: {error}");
            error.exit_code()
        }
    }
}
