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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    month: Option<Spanned<f64>>,
    commit: Option<Spanned<f64>>,
}

/// Hourly prices, USD, by instance type: the user's own (discounts, savings plans); a type
/// not named is priced from the AWS price list, or the spot price history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices(pub BTreeMap<String, f64>);

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
    let Some(prices) = raw.prices else {
        return Ok(Prices::default());
    };
    let mut out = BTreeMap::new();
    for (kind, price) in prices.into_inner() {
        let key = format!("cost.prices.{}", super::toml_error::segment(&kind));
        if !(price.get_ref().is_finite() && *price.get_ref() >= 0.0) {
            let why = "must be a price in USD an hour, 0 or more";
            return cx.invalid(price.span(), &key, why);
        }
        out.insert(kind, *price.get_ref());
    }
    Ok(Prices(out))
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
