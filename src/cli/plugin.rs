//! Running as a kubectl plugin: kubectl runs `kubectl-barge` from PATH for
//! `kubectl barge …`, and help and errors should then say `kubectl barge`.

/// The file name kubectl looks for on PATH.
pub const PLUGIN_FILE: &str = "kubectl-barge";

/// How the user invoked this binary: `kubectl barge` or `barge`.
pub fn display_name() -> &'static str {
    if invoked_as_plugin() {
        "kubectl barge"
    } else {
        "barge"
    }
}

fn invoked_as_plugin() -> bool {
    program_file().is_some_and(|name| is_plugin_file(&name))
}

/// Whether kubectl runs this binary to complete `kubectl barge …` (as
/// `kubectl_complete-barge`).
pub fn invoked_as_completion() -> bool {
    program_file().is_some_and(|name| is_file(&name, super::complete::COMPLETE_FILE))
}

fn program_file() -> Option<String> {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Whether a program file name is the plugin's (`kubectl-barge`, with any
/// extension).
pub fn is_plugin_file(name: &str) -> bool {
    is_file(name, PLUGIN_FILE)
}

/// Whether a program file name is `file`, with any extension.
fn is_file(name: &str, file: &str) -> bool {
    name == file
        || name
            .strip_prefix(file)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The command line definition, named as invoked.
pub fn named(command: clap::Command) -> clap::Command {
    command.bin_name(display_name())
}

#[cfg(test)]
mod tests {
    use super::is_plugin_file;

    #[test]
    fn the_plugin_file_is_recognised_with_or_without_an_extension() {
        assert!(is_plugin_file("kubectl-barge"));
        assert!(is_plugin_file("kubectl-barge.exe"));
        assert!(!is_plugin_file("barge"));
        assert!(!is_plugin_file("kubectl-bargex"));
    }
}
