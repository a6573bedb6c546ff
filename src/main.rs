fn main() -> std::process::ExitCode {
    twinload::cli::main()
}
