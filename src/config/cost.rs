//! `[cost]` and `[budget]`, and a watch's `budget`, as written, and their validation
//! (SPEC §12): what a machine-hour costs, and the caps a start must fit under.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::raw::Ctx;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCost {
    prices: Option<Spanned<BTreeMap<String, Spanned<f64>>>>,
    volume_prices: Option<Spanned<BTreeMap<String, Spanned<f64>>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    month: Option<Spanned<f64>>,
    commit: Option<Spanned<f64>>,
}

/// The user's own prices (discounts, savings plans); what they do not name is priced from
/// the AWS price list, or the spot price history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    /// `prices`: USD an hour, by instance type.
    pub hourly: BTreeMap<String, f64>,
    /// `volume_prices`: USD a GiB-month, by EBS volume type (`gp3` …).
    pub volumes: BTreeMap<String, f64>,
}

/// Caps on spend, USD: a calendar month (UTC), and one commit's runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    pub month: Option<f64>,
    pub commit: Option<f64>,
}

impl Budget {
    pub fn is_set(&self) -> bool {
        self.month.is_some() || self.commit.is_some()
    }
}

pub(super) fn prices(cx: &Ctx, raw: RawCost) -> Result<Prices, ConfigError> {
    Ok(Prices {
        hourly: amounts(cx, raw.prices, "prices", "a price in USD an hour")?,
        volumes: amounts(
            cx,
            raw.volume_prices,
            "volume_prices",
            "a price in USD a GiB-month",
        )?,
    })
}

/// One table of prices under `[cost]`, each 0 or more.
fn amounts(
    cx: &Ctx,
    raw: Option<Spanned<BTreeMap<String, Spanned<f64>>>>,
    name: &str,
    what: &str,
) -> Result<BTreeMap<String, f64>, ConfigError> {
    let mut out = BTreeMap::new();
    for (kind, price) in raw.map(Spanned::into_inner).unwrap_or_default() {
        let key = format!("cost.{name}.{}", super::toml_error::segment(&kind));
        if !(price.get_ref().is_finite() && *price.get_ref() >= 0.0) {
            return cx.invalid(price.span(), &key, format!("must be {what}, 0 or more"));
        }
        out.insert(kind, *price.get_ref());
    }
    Ok(out)
}

/// `[budget]` (`at` = "budget") or a watch's `budget` (`at` = "watch.budget"); a watch's
/// budget has no say over the whole month of the others, but may cap its own.
pub(super) fn budget(
    cx: &Ctx,
    raw: RawBudget,
    at: &str,
    commit: bool,
) -> Result<Budget, ConfigError> {
    let check = |v: &Option<Spanned<f64>>, name: &str| -> Result<Option<f64>, ConfigError> {
        match v {
            Some(cap) if !(cap.get_ref().is_finite() && *cap.get_ref() > 0.0) => cx.invalid(
                cap.span(),
                &format!("{at}.{name}"),
                "must be an amount in USD above 0",
            ),
            v => Ok(v.as_ref().map(|c| *c.get_ref())),
        }
    };
    if let (false, Some(c)) = (commit, &raw.commit) {
        let why = "a commit's cap is a watch's: set it in the watch's budget";
        return cx.invalid(c.span(), &format!("{at}.commit"), why);
    }
    Ok(Budget {
        month: check(&raw.month, "month")?,
        commit: check(&raw.commit, "commit")?,
    })
}
