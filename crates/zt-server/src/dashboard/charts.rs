//! Charts as SVG, drawn here: bars of open findings by severity, share meters, and the trend
//! of open findings per severity over time. Each chart says in words what it shows (for
//! screen readers, and for whoever reads the page's text).

use chrono::NaiveDate;
use maud::{html, Markup};
use zt_store::model::{SeverityCounts, TrendPoint};

use super::layout::n;

/// The severities in the order the charts show them, with their colours (the CSS's).
pub const SEVERITIES: [(&str, &str); 5] = [
    ("critical", "#8e1b1b"),
    ("high", "#c2410c"),
    ("medium", "#a16207"),
    ("low", "#2f6f3e"),
    ("unknown", "#5b6572"),
];

pub fn count(c: &SeverityCounts, severity: &str) -> u64 {
    match severity {
        "critical" => c.critical,
        "high" => c.high,
        "medium" => c.medium,
        "low" => c.low,
        _ => c.unknown,
    }
}

/// Open findings by severity as horizontal bars, each a link to those findings. `href`
/// gives the link of a severity.
pub fn severity_bars(c: &SeverityCounts, href: impl Fn(&str) -> String) -> Markup {
    let max = SEVERITIES
        .iter()
        .map(|(s, _)| count(c, s))
        .max()
        .unwrap_or(0)
        .max(1);
    html! {
        ul .bars aria-label="Open findings by severity" {
            @for (s, colour) in SEVERITIES {
                @let v = count(c, s);
                li {
                    a .bar-label href=(href(s)) { (s) }
                    svg .bar viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" focusable="false" {
                        rect x="0" y="0" width="100" height="10" fill="#e7eaef" {}
                        @if v > 0 {
                            rect x="0" y="0" width=(format!("{:.2}", (v as f64 / max as f64 * 100.0).max(0.8))) height="10" fill=(colour) {}
                        }
                    }
                    span .bar-value data-count=(format!("findings.{s}")) { (n(v)) }
                }
            }
        }
    }
}

/// What part of a whole something is: a meter and "12 of 40 (30 %)".
pub fn share(label: &str, key: &str, part: u64, total: u64) -> Markup {
    let pct = if total == 0 {
        0.0
    } else {
        part as f64 / total as f64 * 100.0
    };
    html! {
        div .share {
            div .share-label { (label) }
            svg .meter viewBox="0 0 100 8" preserveAspectRatio="none" role="img"
                aria-label=(format!("{label}: {pct:.0} percent")) {
                rect x="0" y="0" width="100" height="8" rx="2" fill="#e7eaef" {}
                @if part > 0 {
                    rect x="0" y="0" width=(format!("{:.2}", pct.max(1.0))) height="8" rx="2" fill="#2457c5" {}
                }
            }
            div .share-value {
                span data-count=(key) { (n(part)) } " of "
                span data-count="findings.total" { (n(total)) }
                " (" (format!("{pct:.0}")) " %)"
            }
        }
    }
}

/// What a trend chart draws per severity: the open findings, or those of them past their
/// SLA due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Open,
    Overdue,
}

impl Series {
    /// The name in the overview's URL (`series=`).
    pub fn key(self) -> &'static str {
        match self {
            Series::Open => "open",
            Series::Overdue => "overdue",
        }
    }

    /// What the chart's lines count, in words.
    fn what(self) -> &'static str {
        match self {
            Series::Open => "Open findings",
            Series::Overdue => "Overdue findings (past their SLA due date)",
        }
    }
}

/// The counts of one day of a trend, by severity.
fn day_counts(p: &TrendPoint, series: Series) -> SeverityCounts {
    match series {
        Series::Open => SeverityCounts {
            critical: p.critical,
            high: p.high,
            medium: p.medium,
            low: p.low,
            unknown: p.unknown,
        },
        Series::Overdue => p.overdue_by_severity,
    }
}

/// A "nice" step for about `ticks` gridlines up to `max`.
fn nice_step(max: u64, ticks: u64) -> u64 {
    let raw = (max as f64 / ticks as f64).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    step.max(1.0) as u64
}

/// Open (or overdue) findings per severity per day, as lines over the period; the newest day
/// last.
pub fn trend(points: &[TrendPoint], days: u32, series: Series) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    if points.is_empty() {
        return html! {
            p .empty { "No history yet: the trend starts with the first day the server records." }
        };
    }
    let max = points
        .iter()
        .flat_map(|p| {
            SEVERITIES
                .iter()
                .map(move |(s, _)| count(&day_counts(p, series), s))
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let step = nice_step(max, 4);
    let top_value = max.div_ceil(step) * step;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    // The x axis spans the whole period asked for, so that a short history shows as such.
    let last = points[points.len() - 1].date;
    let first = last - chrono::Duration::days(i64::from(days.max(2)) - 1);
    let span = (last - first).num_days().max(1) as f64;
    let x = |d: NaiveDate| LEFT + (d - first).num_days() as f64 / span * plot_w;
    let y = |v: u64| TOP + plot_h - v as f64 / top_value as f64 * plot_h;
    let latest = &day_counts(&points[points.len() - 1], series);
    let description = format!(
        "{} per severity over the last {days} days. On {last}: {}.",
        series.what(),
        SEVERITIES
            .iter()
            .map(|(s, _)| format!("{} {s}", count(latest, s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ticks: Vec<u64> = (0..=top_value / step).map(|i| i * step).collect();
    let labels = [
        first,
        first + chrono::Duration::days((span / 2.0) as i64),
        last,
    ];
    html! {
        figure .trend data-series=(series.key()) {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(description) {
                @for t in &ticks {
                    line x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(*t))) y2=(format!("{:.1}", y(*t)))
                        stroke="#d9dee5" stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(format!("{:.1}", y(*t) + 4.0)) text-anchor="end" font-size="11" fill="#4a5462" { (n(*t)) }
                }
                @for (i, d) in labels.iter().enumerate() {
                    text x=(format!("{:.1}", x(*d))) y=(H - 8.0)
                        text-anchor=(match i { 0 => "start", 2 => "end", _ => "middle" })
                        font-size="11" fill="#4a5462" { (d.format("%b %d")) }
                }
                @for (s, colour) in SEVERITIES {
                    @let path = line_path(points, |p| (x(p.date), y(count(&day_counts(p, series), s))));
                    @if points.len() == 1 {
                        circle cx=(format!("{:.1}", x(points[0].date))) cy=(format!("{:.1}", y(count(&day_counts(&points[0], series), s))))
                            r="3" fill=(colour) {}
                    } @else {
                        path d=(path) fill="none" stroke=(colour) stroke-width="2" stroke-linejoin="round" {}
                    }
                }
            }
            figcaption {
                @if points.len() < 2 {
                    p .muted { "One day recorded so far: the lines grow as the server records a point each day." }
                }
                ul .legend {
                    @for (s, colour) in SEVERITIES {
                        li {
                            svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" focusable="false" {
                                rect width="12" height="12" rx="2" fill=(colour) {}
                            }
                            " " (s) " " strong { (n(count(latest, s))) }
                        }
                    }
                }
            }
        }
    }
}

fn line_path<T>(points: &[T], at: impl Fn(&T) -> (f64, f64)) -> String {
    let mut d = String::new();
    for (i, p) in points.iter().enumerate() {
        let (x, y) = at(p);
        d.push_str(&format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" }));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_numbers() {
        assert_eq!(nice_step(1, 4), 1);
        assert_eq!(nice_step(7, 4), 2);
        assert_eq!(nice_step(40, 4), 10);
        assert_eq!(nice_step(1234, 4), 500);
    }

    #[test]
    fn a_trend_describes_its_latest_day() {
        let day = |d: u32, critical: u64| {
            let mut p = TrendPoint::of(
                NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
                &Default::default(),
            );
            p.critical = critical;
            p.high = 2;
            p
        };
        let svg = trend(&[day(1, 5), day(2, 3)], 30, Series::Open).into_string();
        assert!(
            svg.contains("On 2026-12-02: 3 critical, 2 high, 0 medium, 0 low, 0 unknown"),
            "{svg}"
        );
        assert_eq!(svg.matches("<path").count(), 5);
        // The overdue series draws the points' overdue counts per severity.
        let mut late = day(2, 3);
        late.overdue_by_severity.high = 2;
        late.overdue = 2;
        let svg = trend(&[day(1, 5), late], 30, Series::Overdue).into_string();
        assert!(
            svg.contains("Overdue findings (past their SLA due date) per severity over the last 30 days. On 2026-12-02: 0 critical, 2 high, 0 medium, 0 low, 0 unknown"),
            "{svg}"
        );
    }
}
