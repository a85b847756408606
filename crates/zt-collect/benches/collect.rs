//! Prints how long the collectors take: the dpkg and rpm parsers on the shared real databases,
//! and a full collection of this host. Run with `cargo bench -p zt-collect --bench collect`.
//! (Peak RSS and CPU of the agent binary are measured with `/usr/bin/time -v`; see the README.)

use std::time::{Duration, Instant};

fn time<T>(label: &str, rounds: u32, mut f: impl FnMut() -> T) {
    // one warm-up round so file caches do not count
    std::hint::black_box(f());
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(f());
    }
    let per = start.elapsed() / rounds;
    println!("{label:<58} {:>10.3} ms/iter ({rounds} rounds)", as_ms(per));
}

fn as_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dpkg = zt_testkit::shared_path("inventories/dpkg/debian-12.11-host.status");
    let text = std::fs::read_to_string(&dpkg).unwrap();
    time(
        "dpkg::parse_status (Debian 12 host, 707 packages)",
        50,
        || zt_collect::dpkg::parse_status(&text).unwrap().len(),
    );
    let rpmdb = zt_testkit::shared_path("inventories/rpm/cbl-mariner-2.0.rpmdb.sqlite");
    time(
        "rpm::read_rpmdb_sqlite (CBL-Mariner 2.0, 129 packages)",
        50,
        || zt_collect::rpm::read_rpmdb_sqlite(&rpmdb).unwrap().len(),
    );
    let options = zt_collect::CollectOptions::default();
    let apps = zt_collect::collect(&options).apps.len();
    time(
        &format!("collect(/) on this host ({apps} apps)"),
        10,
        || zt_collect::collect(&options).apps.len(),
    );
}
