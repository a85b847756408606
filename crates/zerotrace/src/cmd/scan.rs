//! `zerotrace scan` (not built yet: see the issue that owns it).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _global: &crate::GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`zerotrace scan` is not built yet")
}
