//! A watch's `results` table as written, and its validation into [`Results`]: what each
//! run reports, and how a commit is judged against its baseline (SPEC §7, §11).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Ctx, parse_duration};
use super::toml_error::segment;
use super::{Better, ConfigError, Results};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResults {
    metrics: Vec<String>,
    #[serde(default)]
    better: BTreeMap<String, Better>,
    timeout: Option<Spanned<String>>,
    stop_when_reported: Option<bool>,
    primary: Option<Spanned<String>>,
    min_effect: Option<Spanned<f64>>,
    max_repeats: Option<Spanned<i64>>,
    alpha: Option<Spanned<f64>>,
}

/// The error rate of a verdict when none is set.
pub const DEFAULT_ALPHA: f64 = 0.05;

const DEFAULT_RESULTS_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Tags left for the user's own, of EC2's 50 per instance.
const USER_TAGS: usize = 6;
/// The most metrics whose result tags fit beside pushwake's own and the user's.
pub const MAX_METRICS: usize = 50 - super::OWN_TAGS - USER_TAGS;

/// The longest metric name: its tag key (`pushwake:result:` and the name) stays well inside
/// EC2's 128 characters.
pub const MAX_METRIC_NAME: usize = 100;

/// Whether `name` can be a metric: it is part of a tag key that the job writes, often
/// through instance metadata, whose tag keys take letters, digits and +-=.,_:@ only (no
/// '/', no spaces). The key begins `pushwake:`, so EC2's reserved `aws:` cannot arise.
pub fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_METRIC_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-=.,_:@".contains(c))
}

pub(super) fn results(cx: &Ctx, raw: Spanned<RawResults>) -> Result<Results, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    if raw.metrics.is_empty() {
        return cx.invalid(span, "watch.results.metrics", "name at least one metric");
    }
    if raw.metrics.len() > MAX_METRICS {
        return cx.invalid(
            span,
            "watch.results.metrics",
            format!(
                "{} metrics are too many: EC2 keeps at most 50 tags on an instance, pushwake \
                 writes {} of its own and one per metric, and at least {USER_TAGS} are left for \
                 yours; list at most {MAX_METRICS}",
                raw.metrics.len(),
                super::OWN_TAGS
            ),
        );
    }
    for (i, m) in raw.metrics.iter().enumerate() {
        let key = format!("watch.results.metrics[{i}]");
        if !is_metric_name(m) {
            return cx.invalid(
                span.clone(),
                &key,
                "cannot be part of a tag key that instance metadata shows: use letters, \
                 digits and +-=.,_:@ (no '/' or spaces)",
            );
        }
        if let Some(j) = raw.metrics[..i].iter().position(|n| n == m) {
            return cx.invalid(span, &key, format!("the same metric as metrics[{j}]"));
        }
    }
    if let Some(m) = raw.better.keys().find(|m| !raw.metrics.contains(m)) {
        let key = format!("watch.results.better.{}", segment(m));
        return cx.invalid(span, &key, "is not one of the metrics");
    }
    let timeout = match &raw.timeout {
        Some(s) => parse_duration(cx, s, "watch.results.timeout")?,
        None => DEFAULT_RESULTS_TIMEOUT,
    };
    let primary = match &raw.primary {
        Some(p) if !raw.metrics.contains(p.get_ref()) => {
            return cx.invalid(
                p.span(),
                "watch.results.primary",
                "is not one of the metrics",
            );
        }
        Some(p) => p.get_ref().clone(),
        None => raw.metrics[0].clone(),
    };
    let min_effect = match &raw.min_effect {
        Some(d) if !(d.get_ref().is_finite() && *d.get_ref() > 0.0) => {
            let why = "must be a number greater than zero, in the primary metric's units";
            return cx.invalid(d.span(), "watch.results.min_effect", why);
        }
        d => d.as_ref().map(|d| *d.get_ref()),
    };
    let max_repeats = match &raw.max_repeats {
        Some(n) if !(2..=super::watch::MAX_REPEATS).contains(n.get_ref()) => {
            let why = format!(
                "must be a whole number from 2 to {}",
                super::watch::MAX_REPEATS
            );
            return cx.invalid(n.span(), "watch.results.max_repeats", why);
        }
        n => n.as_ref().map(|n| *n.get_ref() as u32),
    };
    let alpha = match &raw.alpha {
        Some(a) if !(*a.get_ref() > 0.0 && *a.get_ref() <= 0.5) => {
            let why = "must be a number above 0 and at most 0.5, e.g. 0.05";
            return cx.invalid(a.span(), "watch.results.alpha", why);
        }
        a => a.as_ref().map_or(DEFAULT_ALPHA, |a| *a.get_ref()),
    };
    Ok(Results {
        metrics: raw.metrics,
        better: raw.better,
        timeout,
        stop_when_reported: raw.stop_when_reported.unwrap_or(true),
        primary,
        min_effect,
        max_repeats,
        alpha,
    })
}
