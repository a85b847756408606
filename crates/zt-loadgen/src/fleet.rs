//! Simulated hosts: which packages each carries, how its inventory drifts between rounds, and
//! the report it sends. Hosts are kept compact (indices into the catalog) so that a fleet of
//! 100,000 hosts with hundreds of apps each fits in a few tens of megabytes.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use zt_inventory::{App, AppSource, Host, InventoryReport};

use crate::catalog::{Catalog, CatalogEntry};

/// One installed package of a simulated host: an index into the host's package pool and the
/// chosen version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Installed {
    entry: u32,
    version: u16,
}

/// A simulated host.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub company: usize,
    pub hostname: String,
    platform: usize,
    installed: Vec<Installed>,
}

/// Builds hosts and their reports from a catalog. Entries `0..platform.packages.len()` of a
/// host's pool are its platform's packages, the rest are the shared language packages, and past
/// those come synthetic packages for hosts that carry more apps than the catalog knows.
#[derive(Debug, Clone)]
pub struct Fleet {
    catalog: Catalog,
    apps_per_host: usize,
    weights_total: u32,
}

impl Fleet {
    pub fn new(catalog: Catalog, apps_per_host: usize) -> Fleet {
        let weights_total = catalog
            .platforms
            .iter()
            .map(|p| p.weight)
            .sum::<u32>()
            .max(1);
        Fleet {
            catalog,
            apps_per_host,
            weights_total,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A new host for `company`, deterministic in (`seed`, `company`, `index`).
    pub fn host(&self, seed: u64, company: usize, index: usize) -> SimHost {
        let mut rng = SmallRng::seed_from_u64(
            seed ^ ((company as u64) << 32) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut pick = rng.random_range(0..self.weights_total);
        let mut platform = 0;
        for (i, p) in self.catalog.platforms.iter().enumerate() {
            if pick < p.weight {
                platform = i;
                break;
            }
            pick -= p.weight;
        }
        let pool = self.pool_len(platform);
        let platform_len = self.catalog.platforms[platform].packages.len();
        // Every host carries its platform's packages first (an OS image), then a random subset
        // of language packages, then synthetic ones.
        let mut entries: Vec<u32> = (0..platform_len.min(self.apps_per_host) as u32).collect();
        let mut others: Vec<u32> = (platform_len as u32..pool as u32).collect();
        while entries.len() < self.apps_per_host && !others.is_empty() {
            let i = rng.random_range(0..others.len());
            entries.push(others.swap_remove(i));
        }
        let mut next_synthetic = pool as u32;
        while entries.len() < self.apps_per_host {
            entries.push(next_synthetic);
            next_synthetic += 1;
        }
        let installed = entries
            .into_iter()
            .map(|entry| Installed {
                entry,
                version: self.pick_version(platform, entry, &mut rng),
            })
            .collect();
        SimHost {
            company,
            hostname: format!("c{company:03}-host-{index:05}"),
            platform,
            installed,
        }
    }

    /// Changes a few apps of `host`: mostly upgrades, sometimes a downgrade or a reinstall.
    pub fn drift(&self, host: &mut SimHost, rng: &mut SmallRng) {
        if host.installed.is_empty() {
            return;
        }
        let changes = rng.random_range(1..=3usize).min(host.installed.len());
        for _ in 0..changes {
            let i = rng.random_range(0..host.installed.len());
            let item = host.installed[i];
            let versions = self.version_count(host.platform, item.entry) as u16;
            let new_version = if versions <= 1 {
                item.version
            } else if item.version + 1 < versions && rng.random_bool(0.8) {
                item.version + 1
            } else {
                rng.random_range(0..versions)
            };
            host.installed[i].version = new_version;
        }
    }

    /// The apps `host` reports now.
    pub fn apps(&self, host: &SimHost) -> Vec<App> {
        host.installed
            .iter()
            .map(|item| self.app(host.platform, item.entry, item.version as usize))
            .collect()
    }

    /// The report `host` sends now, under a fresh report id.
    pub fn report(&self, host: &SimHost) -> InventoryReport {
        let platform = &self.catalog.platforms[host.platform];
        InventoryReport {
            report_id: uuid::Uuid::new_v4(),
            collected_at: chrono::Utc::now(),
            host: Host {
                hostname: host.hostname.clone(),
                os: platform.os.clone(),
                arch: platform.arch.to_string(),
            },
            apps: self.apps(host),
            tags: None,
        }
    }

    pub fn os_of(&self, host: &SimHost) -> (&zt_inventory::OsInfo, &'static str) {
        let p = &self.catalog.platforms[host.platform];
        (&p.os, p.arch)
    }

    fn pool_len(&self, platform: usize) -> usize {
        self.catalog.platforms[platform].packages.len() + self.catalog.language_packages.len()
    }

    fn entry(&self, platform: usize, entry: u32) -> Option<&CatalogEntry> {
        let packages = &self.catalog.platforms[platform].packages;
        let entry = entry as usize;
        if entry < packages.len() {
            Some(&packages[entry])
        } else {
            self.catalog.language_packages.get(entry - packages.len())
        }
    }

    fn version_count(&self, platform: usize, entry: u32) -> usize {
        self.entry(platform, entry)
            .map(|e| e.versions.len())
            .unwrap_or(SYNTHETIC_VERSIONS)
    }

    /// Newer versions are more common: version i has weight 2^i.
    fn pick_version(&self, platform: usize, entry: u32, rng: &mut SmallRng) -> u16 {
        let n = self.version_count(platform, entry).min(16);
        let total: u32 = (1u32 << n) - 1;
        let mut pick = rng.random_range(0..total);
        for i in (0..n).rev() {
            let w = 1u32 << i;
            if pick < w {
                return i as u16;
            }
            pick -= w;
        }
        (n - 1) as u16
    }

    fn app(&self, platform: usize, entry: u32, version: usize) -> App {
        match self.entry(platform, entry) {
            Some(e) => e.app(version),
            None => {
                // Synthetic npm packages: real-looking load that matches no advisory.
                let n = entry as usize - self.pool_len(platform);
                App::new(
                    format!("zt-sim-{n:05}"),
                    format!("{}.{}.{}", 1 + n % 5, version, n % 13),
                    AppSource::Npm,
                )
            }
        }
    }
}

const SYNTHETIC_VERSIONS: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_deterministic_and_sized() {
        let fleet = Fleet::new(Catalog::builtin(), 100);
        let a = fleet.host(7, 1, 2);
        let b = fleet.host(7, 1, 2);
        assert_eq!(fleet.apps(&a), fleet.apps(&b));
        assert_eq!(fleet.apps(&a).len(), 100);
        let big = Fleet::new(Catalog::builtin(), 500).host(7, 1, 2);
        assert_eq!(big.installed.len(), 500);
        let report = Fleet::new(Catalog::builtin(), 500).report(&big);
        zt_inventory::validate_report(&report).unwrap();
    }

    #[test]
    fn drift_changes_something_eventually() {
        let fleet = Fleet::new(Catalog::builtin(), 100);
        let mut host = fleet.host(1, 0, 0);
        let before = fleet.apps(&host);
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..10 {
            fleet.drift(&mut host, &mut rng);
        }
        assert_ne!(before, fleet.apps(&host));
    }
}
