//! `zerotrace-agent`: lists what is installed on this host and reports it to a ZeroTrace server.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("zerotrace-agent is not built yet")
}
