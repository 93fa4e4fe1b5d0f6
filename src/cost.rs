//! What machines cost, and whether a start fits the budget (SPEC §12): pure decisions.
//!
//! A machine's time on a run is a [`Span`]: from its launch to its stop or termination,
//! both on EC2's clock (the launch time, and the time in EC2's state transition reason, or
//! the first look that found it down). Its cost is its hours times its hourly price; a
//! price that cannot be had is said, never taken for 0.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Budget;

/// One machine's time serving a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub instance: String,
    pub from: DateTime<Utc>,
    /// `None` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// USD an hour; `None`: no price could be had (see `unpriced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Why it has no price, e.g. "no price for g5.xlarge in eu-west-1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<String>,
}

impl Span {
    /// Its running seconds by `now` (EC2's clock) when it still runs.
    pub fn seconds(&self, now: DateTime<Utc>) -> i64 {
        (self.to.unwrap_or(now) - self.from).num_seconds().max(0)
    }

    /// Its cost by `now`, USD; `None` without a price.
    pub fn cost(&self, now: DateTime<Utc>) -> Option<f64> {
        Some(self.price? * self.seconds(now) as f64 / 3600.0)
    }
}

/// A price asked of AWS: USD an hour, or `None` when it has none; and when it was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub usd: Option<f64>,
    pub at: DateTime<Utc>,
    /// Why there is no price when AWS could not be asked (a permission, an outage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// How long an asked price is kept: a day for the price list (it changes a few times a
/// year), an hour for spot (it moves with demand).
pub fn quote_for(spot: bool) -> chrono::Duration {
    match spot {
        true => chrono::Duration::hours(1),
        false => chrono::Duration::days(1),
    }
}

/// The name of a price in the state: `on-demand/TYPE/REGION` or `spot/TYPE/ZONE`.
pub fn quote_key(spot: bool, instance_type: &str, place: &str) -> String {
    let market = if spot { "spot" } else { "on-demand" };
    format!("{market}/{instance_type}/{place}")
}

/// What some spans cost: machine seconds, USD for those priced, and what could not be.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Total {
    pub machine_seconds: i64,
    pub cost: f64,
    /// Why some machine time has no price (distinct reasons); empty when all priced.
    pub unknown: Vec<String>,
}

impl Total {
    pub fn of<'a>(spans: impl IntoIterator<Item = &'a Span>, now: DateTime<Utc>) -> Total {
        let mut t = Total::default();
        for s in spans {
            t.machine_seconds += s.seconds(now);
            match s.cost(now) {
                Some(c) => t.cost += c,
                None => {
                    let why = s.unpriced.clone().unwrap_or_else(|| "no price".into());
                    if !t.unknown.contains(&why) {
                        t.unknown.push(why);
                    }
                }
            }
        }
        t
    }

    /// "10 runs, 7.3 machine-hours, $7.35", or "…, cost unknown: no price for …".
    pub fn words(&self, runs: usize) -> String {
        let hours = self.machine_seconds as f64 / 3600.0;
        let mut text = format!(
            "{runs} run{}, {hours:.1} machine-hours",
            if runs == 1 { "" } else { "s" }
        );
        match self.unknown.is_empty() {
            true => text.push_str(&format!(", ${:.2}", self.cost)),
            false => text.push_str(&format!(", cost unknown: {}", self.unknown.join("; "))),
        }
        text
    }
}

/// What a watch's stopped pool machines cost while they wait: their volumes' storage,
/// which EBS bills whether the machine runs or not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Standing {
    /// Stopped pool machines.
    pub machines: usize,
    pub volumes: usize,
    pub gib: u64,
    /// USD a month for the volumes that have a price.
    pub usd_a_month: f64,
    /// Why some volume has no price (its type has none), if any has none.
    pub unknown: Vec<String>,
}

impl Standing {
    /// Adds a stopped machine's volumes, each `(GiB, its type)`, priced by `price` (USD a
    /// GiB-month, or why there is none).
    pub fn add<'a>(
        &mut self,
        volumes: impl IntoIterator<Item = (u32, &'a str)>,
        mut price: impl FnMut(&str) -> Result<f64, String>,
    ) {
        self.machines += 1;
        for (gib, kind) in volumes {
            self.volumes += 1;
            self.gib += u64::from(gib);
            match price(kind) {
                Ok(usd) => self.usd_a_month += f64::from(gib) * usd,
                Err(why) if !self.unknown.contains(&why) => self.unknown.push(why),
                Err(_) => {}
            }
        }
    }

    /// "2 stopped machines' volumes: 2 volumes, 16 GiB, $1.28 a month".
    pub fn words(&self) -> String {
        let mut text = format!(
            "{} stopped machine{}: {} volume{}, {} GiB",
            self.machines,
            if self.machines == 1 { "" } else { "s" },
            self.volumes,
            if self.volumes == 1 { "" } else { "s" },
            self.gib
        );
        match self.unknown.is_empty() {
            true => text.push_str(&format!(", ${:.2} a month", self.usd_a_month)),
            false => text.push_str(&format!(
                ", ${:.2} a month and more: {}",
                self.usd_a_month,
                self.unknown.join("; ")
            )),
        }
        text
    }
}

/// The calendar month (UTC) of `t`: the key of the spend kept in the state.
pub fn month(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// The median seconds of the ended spans, if any: what a run of the watch takes.
pub fn median_seconds<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Option<i64> {
    let mut ended: Vec<i64> = spans
        .into_iter()
        .filter_map(|s| Some((s.to? - s.from).num_seconds()))
        .collect();
    if ended.is_empty() {
        return None;
    }
    ended.sort_unstable();
    Some(ended[ended.len() / 2])
}

/// What a start of `machines` machines is expected to cost: at `price` an hour for the
/// watch's median runtime, else its `max_runtime`; `None` when either is unknown (a cap
/// cannot then be held, and the start is refused).
pub fn estimate(machines: usize, price: Option<f64>, seconds: Option<i64>) -> Option<f64> {
    Some(machines as f64 * price? * seconds? as f64 / 3600.0)
}

/// Why a start does not fit a cap: which cap, the spend so far, the cap, the estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub which: &'static str,
    pub spend: f64,
    pub cap: f64,
    pub estimate: Option<f64>,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.estimate {
            Some(e) => write!(
                f,
                "refused by the {}: ${:.2} spent, a cap of ${:.2}, and this start is estimated at ${e:.2}",
                self.which, self.spend, self.cap
            ),
            None => write!(
                f,
                "refused by the {}: ${:.2} spent of ${:.2}, and this start cannot be estimated \
                 (no price, or neither a runtime seen nor max_runtime)",
                self.which, self.spend, self.cap
            ),
        }
    }
}

/// What a start would be weighed against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    /// Every watch's spend this month, USD.
    pub month: f64,
    /// This watch's spend this month.
    pub watch_month: f64,
    /// This commit's runs so far.
    pub commit: f64,
}

/// Whether a start estimated at `estimate` fits the caps: `[budget] month` over every
/// watch, the watch's own month and commit caps.
pub fn fits(
    global: Budget,
    watch: Budget,
    spend: Spend,
    estimate: Option<f64>,
) -> Result<(), OverBudget> {
    let caps = [
        ("month's budget", global.month, spend.month),
        ("watch's month budget", watch.month, spend.watch_month),
        ("commit's budget", watch.commit, spend.commit),
    ];
    for (which, cap, spent) in caps {
        let Some(cap) = cap else { continue };
        let over = match estimate {
            Some(e) => spent + e > cap,
            None => true,
        };
        if over {
            return Err(OverBudget {
                which,
                spend: spent,
                cap,
                estimate,
            });
        }
    }
    Ok(())
}

/// Adds a span's cost, once it ended, to the month it ended in.
pub fn book(spend: &mut BTreeMap<String, f64>, span: &Span) {
    if let (Some(to), Some(cost)) = (span.to, span.cost(span.to.unwrap_or(span.from))) {
        *spend.entry(month(to)).or_default() += cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        format!("2026-12-01T{h:02}:{m:02}:00Z").parse().unwrap()
    }

    fn span(from: DateTime<Utc>, to: Option<DateTime<Utc>>, price: Option<f64>) -> Span {
        Span {
            instance: "i-1".into(),
            from,
            to,
            instance_type: Some("g5.xlarge".into()),
            price,
            unpriced: price
                .is_none()
                .then(|| "no price for g5.xlarge in eu-west-1".into()),
        }
    }

    #[test]
    fn a_span_costs_its_hours_times_its_price() {
        let s = span(at(10, 0), Some(at(11, 30)), Some(1.006));
        assert_eq!(s.seconds(at(12, 0)), 5400);
        assert!((s.cost(at(12, 0)).unwrap() - 1.509).abs() < 1e-9);
        let running = span(at(10, 0), None, Some(1.0));
        assert_eq!(running.seconds(at(10, 30)), 1800);
    }

    #[test]
    fn a_total_says_what_it_could_not_price_never_zero() {
        let spans = [
            span(at(10, 0), Some(at(11, 0)), Some(1.0)),
            span(at(10, 0), Some(at(12, 0)), None),
        ];
        let t = Total::of(&spans, at(13, 0));
        assert_eq!(t.machine_seconds, 3 * 3600);
        assert_eq!(
            t.words(2),
            "2 runs, 3.0 machine-hours, cost unknown: no price for g5.xlarge in eu-west-1"
        );
        let priced = Total::of(&spans[..1], at(13, 0));
        assert_eq!(priced.words(1), "1 run, 1.0 machine-hours, $1.00");
    }

    #[test]
    fn the_median_runtime_and_the_estimate() {
        let spans = [
            span(at(10, 0), Some(at(11, 0)), Some(1.0)),
            span(at(10, 0), Some(at(10, 30)), Some(1.0)),
            span(at(10, 0), Some(at(12, 0)), Some(1.0)),
            span(at(10, 0), None, Some(1.0)),
        ];
        assert_eq!(median_seconds(&spans), Some(3600));
        assert_eq!(estimate(10, Some(1.006), Some(3600)), Some(10.06));
        assert_eq!(estimate(10, None, Some(3600)), None);
        assert_eq!(median_seconds(&spans[3..]), None);
    }

    #[test]
    fn a_start_that_would_pass_a_cap_is_refused_and_says_which() {
        let spend = Spend {
            month: 480.0,
            watch_month: 50.0,
            commit: 5.0,
        };
        let global = Budget {
            month: Some(500.0),
            commit: None,
        };
        let none = Budget::default();
        assert_eq!(fits(global, none, spend, Some(10.0)), Ok(()));
        let over = fits(global, none, spend, Some(30.0)).unwrap_err();
        assert_eq!(over.which, "month's budget");
        assert_eq!(
            over.to_string(),
            "refused by the month's budget: $480.00 spent, a cap of $500.00, and this start is estimated at $30.00"
        );
        let commit = Budget {
            month: None,
            commit: Some(12.0),
        };
        assert_eq!(
            fits(global, commit, spend, Some(10.0)).unwrap_err().which,
            "commit's budget"
        );
        // Without an estimate a cap cannot be held.
        assert!(fits(global, none, spend, None).is_err());
        assert_eq!(fits(Budget::default(), none, spend, None), Ok(()));
    }

    #[test]
    fn spend_is_booked_in_the_month_a_span_ended() {
        let mut spend = BTreeMap::new();
        let end = "2027-01-01T00:30:00Z".parse().unwrap();
        book(
            &mut spend,
            &span(
                "2026-12-31T23:30:00Z".parse().unwrap(),
                Some(end),
                Some(2.0),
            ),
        );
        book(&mut spend, &span(at(10, 0), None, Some(2.0)));
        assert_eq!(spend.keys().collect::<Vec<_>>(), ["2027-01"]);
        assert!((spend["2027-01"] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn stopped_machines_cost_their_volumes_storage_and_an_unpriced_type_is_said() {
        let mut standing = Standing::default();
        let price = |kind: &str| match kind {
            "gp3" => Ok(0.08),
            other => Err(format!("no price for {other} storage in us-east-1")),
        };
        standing.add([(8, "gp3"), (100, "gp3")], price);
        assert_eq!(
            standing.words(),
            "1 stopped machine: 2 volumes, 108 GiB, $8.64 a month"
        );
        standing.add([(50, "io2"), (50, "io2")], price);
        assert_eq!(
            (standing.machines, standing.volumes, standing.gib),
            (2, 4, 208)
        );
        assert_eq!(
            standing.words(),
            "2 stopped machines: 4 volumes, 208 GiB, $8.64 a month and more: no price for io2 \
             storage in us-east-1"
        );
    }
}
