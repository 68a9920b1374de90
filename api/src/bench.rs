//! The foundation benchmark (`shouhu bench`); see docs/benchmarks.md.

/// Benchmark options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Run the benchmark.
pub async fn run(_cfg: crate::config::Config, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
