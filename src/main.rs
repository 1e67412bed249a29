fn main() -> std::process::ExitCode {
    barge::cli::main()
}
