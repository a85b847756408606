//! `zerotrace loadgen` (not built yet: see the issue that owns it).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`zerotrace loadgen` is not built yet")
}
