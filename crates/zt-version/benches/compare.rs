//! Comparisons and parses per second for every scheme, on realistic versions, plus OSV range
//! queries. Run: `cargo bench -p zt-version` (criterion prints `thrpt` in elements per second:
//! one element is one comparison, one parse or one range query).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zt_version::osv::{AffectedSpec, Event, Range, RangeKind};
use zt_version::{Scheme, Version};

fn samples(scheme: Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::Dpkg => &[
            "2.36.1-8+deb11u1",
            "1:2.30-1ubuntu1~18.04",
            "7.88.1-10+deb12u5",
            "3.0.11-1~deb12u2",
            "1.2.13.dfsg-1",
            "2:8.2.3995-1ubuntu2.15",
            "252.22-1~deb12u1",
            "1.0~rc1-1",
        ],
        Scheme::Rpm => &[
            "0:3.10.0-1160.el7",
            "1:1.1.1k-9.el8_7",
            "7.76.1-26.el9_3.2",
            "2.34-60.el9",
            "1.0^git20230101-1.fc38",
            "8.0.1~rc1-2.cm2",
            "5.14.0-362.8.1.el9_3",
            "4.18.0-513.5.1.el8_9",
        ],
        Scheme::Apk => &[
            "3.1.4-r5",
            "1.36.1-r15",
            "8.5.0_rc1-r0",
            "2.4.57_p20230601-r0",
            "1.2.13-r1",
            "3.0.12-r4",
            "1.1.1w-r1",
            "0.1_git20240101-r3",
        ],
        Scheme::Pep440 => &[
            "2.31.0",
            "1.26.0rc1",
            "3.0.0.post1",
            "1!2.0",
            "0.9.0.dev4",
            "2.2.2+cu121",
            "41.0.7",
            "1.0b2",
        ],
        Scheme::SemVer | Scheme::Go => &[
            "4.17.21",
            "1.0.0-beta.11",
            "v0.0.0-20220722155217-630584e8d5aa",
            "v2.3.1+incompatible",
            "0.10.3",
            "1.2.3-rc.1+build.5",
            "18.2.0",
            "v1.56.3",
        ],
        Scheme::Maven => &[
            "2.17.1",
            "5.3.31",
            "1.0.0.Alpha1",
            "2.9.0.RC1",
            "31.1-jre",
            "1.2.3-SNAPSHOT",
            "4.1.100.Final",
            "9.4.53.v20231009",
        ],
        Scheme::RubyGems => &[
            "7.1.2",
            "1.15.5",
            "6.0.0.beta3",
            "2.8.1",
            "1.0.0.rc1",
            "3.2.22.5",
            "0.9.12",
            "5.2.8.1",
        ],
        Scheme::NuGet => &[
            "13.0.3",
            "6.0.0-preview.7.21377.19",
            "4.7.2.1",
            "1.0.0-beta",
            "8.0.0",
            "2.2.0-rc1-final",
            "12.0.1",
            "5.2.9",
        ],
        Scheme::Packagist => &[
            "v5.4.32",
            "2.0.0-beta2",
            "1.0.0-RC1",
            "7.4.0",
            "dev-main",
            "10.2.0",
            "3.0.0-alpha1",
            "1.13.2",
        ],
        Scheme::Cran => &[
            "1.1-3", "0.9.5", "4.3.2", "1.0-12", "2.23-20", "0.4.7", "3.5.1", "1.8-4",
        ],
        Scheme::Pub => &[
            "6.1.1",
            "1.0.0+1",
            "2.0.0-nullsafety.0",
            "0.13.6",
            "3.1.0",
            "1.2.3+build.7",
            "4.0.0-dev",
            "2.1.0",
        ],
        Scheme::Hackage => &[
            "1.2.3.0", "0.11.3.0", "2.0", "4.18.1.0", "1.0.0.1", "0.6.7", "2.2.0.0", "3.1.1",
        ],
        Scheme::Generic => &[
            "120.0.6099.109",
            "120.0.6099.110",
            "23.01",
            "7.1.2 build 15",
            "1.1.1w",
            "24.0.1",
            "10.0.19045.3803",
            "3.11.7",
        ],
    }
}

fn bench_schemes(c: &mut Criterion) {
    let mut cmp = c.benchmark_group("compare");
    for scheme in Scheme::ALL {
        let parsed: Vec<Version> = samples(scheme)
            .iter()
            .map(|s| scheme.parse(s).unwrap())
            .collect();
        let pairs = (parsed.len() * parsed.len()) as u64;
        cmp.throughput(Throughput::Elements(pairs));
        cmp.bench_function(scheme.name(), |b| {
            b.iter(|| {
                let mut less = 0u32;
                for x in &parsed {
                    for y in &parsed {
                        less += u32::from(black_box(x) < black_box(y));
                    }
                }
                less
            })
        });
    }
    cmp.finish();

    let mut parse = c.benchmark_group("parse");
    for scheme in Scheme::ALL {
        let texts = samples(scheme);
        parse.throughput(Throughput::Elements(texts.len() as u64));
        parse.bench_function(scheme.name(), |b| {
            b.iter(|| {
                for t in texts {
                    black_box(scheme.parse(black_box(t)).unwrap());
                }
            })
        });
    }
    parse.finish();
}

fn bench_osv(c: &mut Criterion) {
    let range = |events: &[(&str, &str)]| Range {
        kind: RangeKind::Ecosystem,
        repo: None,
        events: events
            .iter()
            .map(|(k, v)| match *k {
                "introduced" => Event::Introduced(v.to_string()),
                _ => Event::Fixed(v.to_string()),
            })
            .collect(),
    };
    let ranges = vec![
        range(&[("introduced", "0"), ("fixed", "7.88.1-10+deb12u5")]),
        range(&[("introduced", "8.0.0-1"), ("fixed", "8.4.0-2")]),
    ];
    let (spec, _) = AffectedSpec::compile(Scheme::Dpkg, &ranges, &[]);
    let queries: Vec<Version> = [
        "7.74.0-1.3+deb11u7",
        "7.88.1-10+deb12u5",
        "8.1.0-1",
        "8.5.0-1",
    ]
    .iter()
    .map(|s| Scheme::Dpkg.parse(s).unwrap())
    .collect();
    let mut group = c.benchmark_group("osv");
    group.throughput(Throughput::Elements(queries.len() as u64));
    group.bench_function("affects/dpkg-2-ranges", |b| {
        b.iter(|| {
            queries
                .iter()
                .filter(|q| spec.affects(black_box(q)).is_some())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_schemes, bench_osv);
criterion_main!(benches);
