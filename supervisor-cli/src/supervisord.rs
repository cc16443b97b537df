fn main() -> std::process::ExitCode {
    supervisor_cli::daemon_main()
}
