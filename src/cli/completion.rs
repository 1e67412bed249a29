//! `barge completion bash|zsh|fish`: a completion script for the shell.

use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: CompletionShell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Prints the script completing `command` (the whole command line
/// definition) under the name the binary has on PATH.
pub fn main(args: CompletionArgs, mut command: clap::Command) -> ExitCode {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    // Completion follows the program's file name: kubectl's own completion
    // of plugins is separate.
    let name = if super::plugin::display_name() == "barge" {
        "barge"
    } else {
        super::plugin::PLUGIN_FILE
    };
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    ExitCode::SUCCESS
}
