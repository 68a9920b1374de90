//! The `shouhu` binary.

#![forbid(unsafe_code)]

/// mimalloc: with tens of thousands of small, short-lived buffers on several threads it keeps
/// the resident set far smaller than glibc's per-thread arenas.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shouhu_api::cli::main()
}
