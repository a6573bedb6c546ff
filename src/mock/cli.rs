#[derive(Debug, clap::Args)]
pub struct MockAdtArgs {}
pub fn run(_args: MockAdtArgs) -> anyhow::Result<u8> {
    anyhow::bail!("mock-adt is not built yet")
}
