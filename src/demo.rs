//! `twinload demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}
pub fn run(_args: DemoArgs) -> anyhow::Result<u8> {
    anyhow::bail!("demo is not built yet")
}
