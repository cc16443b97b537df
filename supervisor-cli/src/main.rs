fn main() -> std::process::ExitCode {
    supervisor_cli::run()
}
