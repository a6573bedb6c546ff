#[derive(Debug, clap::Args)]
pub struct LoadArgs {}
pub fn run(_args: LoadArgs) -> anyhow::Result<u8> {
    anyhow::bail!("load is not built yet")
}
