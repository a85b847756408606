//! Match-index figures over all the shared data (every OSV set, NVD, KEV, EPSS):
//! - index build time and index memory (live bytes counted by this binary's allocator),
//! - package-version lookups per second on one core, over the distinct software of the real
//!   SBOMs and inventories (5,440-component trivy SBOM, cdxgen OS SBOM, dpkg and apk databases)
//!   plus desktop programs matched through NVD CPE data,
//! - heap allocations per lookup,
//!
//! then criterion's own measurement of the same workloads.
//!
//! Run: `cargo bench -p zt-match --bench lookups`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use zt_inventory::{AppSource, Software};
use zt_match::MatchIndex;

#[path = "../tests/support/mod.rs"]
mod support;

/// Counts live heap bytes and allocation calls.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The distinct software of the real inputs, as `scan` and the server would match them.
fn workload() -> (Vec<Software>, Vec<Software>) {
    let mut packages = std::collections::BTreeSet::new();
    for (path, os) in [
        ("sboms/trivy-legacy-rootfs.cdx.json", None),
        ("sboms/cdxgen-os.packages.cdx.json", None),
        ("sboms/cdxgen-npm-cdxgen-project.cdx.json", None),
        ("sboms/cyclonedx-py-pyenv-3.11.7.cdx.json", None),
        (
            "inventories/dpkg/trivy-ubuntu18.04.status",
            Some(support::os("ubuntu", "18.04")),
        ),
        (
            "inventories/apk/trivy-apk.installed",
            Some(support::os("alpine", "3.9")),
        ),
        (
            "inventories/apk/osv-scalibr.installed",
            Some(support::os("alpine", "3.11")),
        ),
    ] {
        let inv = zt_sbom::read_path(&zt_testkit::shared_path(path)).expect("read the input");
        let os = os.or(inv.os.clone()).unwrap_or_default();
        for app in &inv.apps {
            packages.insert(Software::from_app(app, &os));
        }
    }
    let programs: Vec<Software> = [
        (
            AppSource::Windows,
            "Google Chrome",
            "116.0.5845.141",
            Some("Google LLC"),
        ),
        (
            AppSource::Windows,
            "Mozilla Firefox (x64 en-US)",
            "117.0",
            Some("Mozilla"),
        ),
        (
            AppSource::Windows,
            "PuTTY release 0.80 (64-bit)",
            "0.80.0.0",
            None,
        ),
        (
            AppSource::Windows,
            "7-Zip 23.01 (x64)",
            "23.01",
            Some("Igor Pavlov"),
        ),
        (AppSource::Windows, "Notepad++ (64-bit x64)", "8.6.2", None),
        (
            AppSource::Macos,
            "com.google.Chrome",
            "120.0.6099.109",
            None,
        ),
        (AppSource::Homebrew, "curl", "8.5.0", None),
        (AppSource::Homebrew, "xz", "5.6.1", None),
        (AppSource::Homebrew, "openssl@3", "3.0.12", None),
        (AppSource::Windows, "Some Inhouse Tool", "2.4", Some("ACME")),
    ]
    .iter()
    .map(|(source, name, version, vendor)| support::program(*source, name, version, *vendor))
    .collect();
    (packages.into_iter().collect(), programs)
}

/// Lookups per second over `software`, repeated for at least `min` wall time on this thread.
fn rate(index: &MatchIndex, software: &[Software], min: Duration) -> (f64, f64, usize) {
    let mut lookups = 0usize;
    let mut hits = 0usize;
    let allocations_before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    while start.elapsed() < min {
        for sw in software {
            hits += index.count_matches(black_box(sw));
        }
        lookups += software.len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    (
        lookups as f64 / elapsed,
        allocations as f64 / lookups as f64,
        hits / (lookups / software.len()),
    )
}

fn main() {
    let started = Instant::now();
    let kb = support::read_knowledge(&support::feed_paths());
    println!(
        "knowledge: {} advisories, {} KEV, {} EPSS read from ../shared/data in {:.2?}",
        kb.advisories.len(),
        kb.kev.len(),
        kb.epss.len(),
        started.elapsed()
    );

    let t = Instant::now();
    let groups = kb.groups();
    println!(
        "alias grouping alone (KnowledgeBase::groups): {:.2?} for {} groups",
        t.elapsed(),
        groups.groups.len()
    );
    drop(groups);
    let t = Instant::now();
    let g = zt_advisory::group_advisories(&kb.advisories);
    println!("  group_advisories: {:.2?}", t.elapsed());
    let t = Instant::now();
    let (kev, epss) = (kb.kev_by_cve(), kb.epss_by_cve());
    println!("  kev/epss maps: {:.2?}", t.elapsed());
    let t = Instant::now();
    let mut g = g;
    g.apply_exploitation(&kev, &epss);
    println!("  apply_exploitation: {:.2?}", t.elapsed());

    let live_before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let index = MatchIndex::build(&kb);
    let build = t.elapsed();
    let index_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(live_before);
    let s = index.stats();
    println!(
        "index: built in {build:.2?}; {:.1} MiB live heap; {} groups, {} OSV entries under {} packages in {} ecosystems, {} CPE products",
        mib(index_bytes),
        s.groups,
        s.osv_entries,
        s.packages,
        s.ecosystems,
        s.cpe_products
    );

    let (packages, programs) = workload();
    let known = packages.iter().filter(|p| index.knows_package(p)).count();
    println!(
        "workload: {} distinct packages ({} named by some advisory), {} desktop programs",
        packages.len(),
        known,
        programs.len()
    );
    let (per_s, allocs, hits) = rate(&index, &packages, Duration::from_secs(3));
    println!(
        "package-version lookups: {:.2} M/s on one core ({:.3} heap allocations per lookup; {} findings per pass)",
        per_s / 1e6,
        allocs,
        hits
    );
    let named: Vec<Software> = packages
        .iter()
        .filter(|p| index.knows_package(p))
        .cloned()
        .collect();
    let (per_s, allocs, _) = rate(&index, &named, Duration::from_secs(2));
    println!(
        "  only packages some advisory names: {:.2} M/s ({allocs:.3} allocations per lookup)",
        per_s / 1e6
    );
    let (per_s, allocs, hits) = rate(&index, &programs, Duration::from_secs(2));
    println!(
        "desktop-program lookups (CPE resolution + NVD configurations): {:.0} k/s ({allocs:.1} allocations per lookup; {hits} findings per pass)",
        per_s / 1e3
    );
    let t = Instant::now();
    let mut findings = 0;
    for sw in &packages {
        findings += index.match_software(sw).len();
    }
    println!(
        "match_software (owned findings) over the workload: {:.2?} for {} packages, {findings} findings",
        t.elapsed(),
        packages.len()
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    let mut group = c.benchmark_group("match_index");
    group.throughput(Throughput::Elements(packages.len() as u64));
    group.bench_function("count_matches/real-packages", |b| {
        b.iter(|| {
            let mut n = 0;
            for sw in &packages {
                n += index.count_matches(black_box(sw));
            }
            n
        })
    });
    group.throughput(Throughput::Elements(programs.len() as u64));
    group.bench_function("match_software/desktop-programs", |b| {
        b.iter(|| {
            let mut n = 0;
            for sw in &programs {
                n += index.match_software(black_box(sw)).len();
            }
            n
        })
    });
    group.finish();
    c.final_summary();
}
