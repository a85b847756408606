//! The queue without the database: how much one claim takes.

/// The app budget of one claim: reports are taken (newest first) until their apps add up to
/// the request's `max_apps`; the first report is always taken, however large.
pub(crate) struct ClaimBudget {
    max_apps: u64,
    apps: u64,
    taken: usize,
}

impl ClaimBudget {
    pub(crate) fn new(max_apps: u32) -> ClaimBudget {
        ClaimBudget {
            max_apps: u64::from(max_apps),
            apps: 0,
            taken: 0,
        }
    }

    /// Takes a report of `app_count` apps when it fits; `false` ends the claim.
    pub(crate) fn take(&mut self, app_count: u64) -> bool {
        if self.taken > 0 && self.apps + app_count > self.max_apps {
            return false;
        }
        self.apps += app_count;
        self.taken += 1;
        true
    }

    /// Whether the claim has all the apps it may take.
    pub(crate) fn is_full(&self) -> bool {
        self.apps >= self.max_apps
    }
}

/// The error of a report whose lease expired `attempts` times: every worker that took it died
/// (or hung) past its lease, so it is dead-lettered as poison.
pub(crate) fn poison_error(attempts: impl std::fmt::Display) -> String {
    format!("lease expired {attempts} times; dead-lettered")
}
