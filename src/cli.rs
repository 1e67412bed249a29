//! The `barge` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "barge", version, about = "A Kubernetes promotion controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print Barge's CustomResourceDefinitions as one YAML stream, or write
    /// one file per CRD (`<plural>.barge.dev.yaml`) with --out-dir.
    Crds {
        /// Write `<plural>.barge.dev.yaml` files into this directory (and
        /// remove generated files of kinds that no longer exist) instead of
        /// printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir } => match crate::crdgen::run(out_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("barge crds: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
