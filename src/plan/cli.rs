#[derive(Debug, clap::Args)]
pub struct PlanArgs {}
pub fn run(_args: PlanArgs) -> anyhow::Result<u8> {
    anyhow::bail!("plan is not built yet")
}
