//! The `shouhu` binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    shouhu_api::cli::main()
}
