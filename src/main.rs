//! The `fieldgate` binary: parse the command line, set up logging, hand over.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fieldgate::cli::Cli::parse();
    fieldgate::cli::init_logging_for(&cli);
    fieldgate::cli::dispatch(cli)
}
