//! The synthetic fleet generator.
#[derive(Debug, clap::Args)]
pub struct GenArgs {}
pub fn run(_args: GenArgs) -> anyhow::Result<u8> {
    anyhow::bail!("gen is not built yet")
}
