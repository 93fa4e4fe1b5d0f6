//! A watch's `launch` table as written, and its validation into a [`Launch`]: where the
//! repeats the pool cannot place are launched (SPEC §10).

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::raw::Ctx;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLaunch {
    template: Spanned<String>,
    version: Option<Spanned<toml::Value>>,
    subnets: Spanned<Vec<Spanned<String>>>,
    instance_types: Option<Vec<Spanned<String>>>,
    market: Option<Market>,
    max_retries: Option<Spanned<i64>>,
    max_machines: Option<Spanned<i64>>,
    mix_types: Option<bool>,
}

/// How launched machines are bought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    #[default]
    OnDemand,
    Spot,
    /// Spot first; what spot cannot place, and every retry of an interrupted repeat, on
    /// demand.
    SpotThenOnDemand,
}

impl std::fmt::Display for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
            Market::SpotThenOnDemand => "spot-then-on-demand",
        })
    }
}

/// Where and how the repeats the pool cannot place are launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// A launch template: its id (`lt-…`) or its name.
    pub template: String,
    /// Its version: a number, `$Latest` or `$Default`; `None`: the default version.
    pub version: Option<String>,
    /// One subnet per zone to launch into.
    pub subnets: Vec<String>,
    /// Instance types to choose from; empty: the template's own.
    pub instance_types: Vec<String>,
    pub market: Market,
    /// How often a repeat whose machine EC2 took away is run again.
    pub max_retries: u32,
    /// The most launched machines up at once for the watch; `None`: the run's repeats.
    pub max_machines: Option<u32>,
    /// Whether the repeats of one run may run on different instance types.
    pub mix_types: bool,
}

/// A repeat runs again at most this often after its machine was taken away.
const MAX_RETRIES: i64 = 10;
const DEFAULT_MAX_RETRIES: u32 = 2;
/// EC2 Fleet takes at most 300 overrides in one launch template config.
pub const MAX_OVERRIDES: usize = 300;

pub(super) fn launch(cx: &Ctx, raw: Spanned<RawLaunch>) -> Result<Launch, ConfigError> {
    let raw = raw.into_inner();
    let template = raw.template.get_ref().trim();
    if !is_template(template) {
        return cx.invalid(
            raw.template.span(),
            "watch.launch.template",
            "not a launch template id or name; write its id (\"lt-\" and 17 hex digits) or its \
             name (3 to 128 letters, digits and ( ) . - / _)",
        );
    }
    let version = match raw.version {
        None => None,
        Some(v) => match v.get_ref() {
            toml::Value::Integer(n) if *n >= 1 => Some(n.to_string()),
            toml::Value::String(s) if matches!(s.as_str(), "$Latest" | "$Default") => {
                Some(s.clone())
            }
            toml::Value::String(s) if s.parse::<u64>().is_ok_and(|n| n >= 1) => Some(s.clone()),
            _ => {
                return cx.invalid(
                    v.span(),
                    "watch.launch.version",
                    "must be a version number, \"$Latest\" or \"$Default\"",
                );
            }
        },
    };
    let at = raw.subnets.span();
    let subnets = raw.subnets.into_inner();
    if subnets.is_empty() {
        return cx.invalid(at, "watch.launch.subnets", "list at least one subnet id");
    }
    let mut ids: Vec<String> = Vec::with_capacity(subnets.len());
    for (i, s) in subnets.into_iter().enumerate() {
        let key = format!("watch.launch.subnets[{i}]");
        if !is_subnet(s.get_ref()) {
            let why = "not a subnet id; write e.g. \"subnet-0123456789abcdef0\"";
            return cx.invalid(s.span(), &key, why);
        }
        if ids.contains(s.get_ref()) {
            return cx.invalid(s.span(), &key, "listed twice");
        }
        ids.push(s.into_inner());
    }
    let mut types: Vec<String> = Vec::new();
    for (i, t) in raw
        .instance_types
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let key = format!("watch.launch.instance_types[{i}]");
        if !is_instance_type(t.get_ref()) {
            let why = "not an instance type; write e.g. \"g5.xlarge\"";
            return cx.invalid(t.span(), &key, why);
        }
        if types.contains(t.get_ref()) {
            return cx.invalid(t.span(), &key, "listed twice");
        }
        types.push(t.into_inner());
    }
    if ids.len() * types.len().max(1) > MAX_OVERRIDES {
        return cx.invalid(
            at,
            "watch.launch.subnets",
            format!(
                "{} subnets × {} instance types are more than the {MAX_OVERRIDES} placements EC2 \
                 Fleet takes in one call",
                ids.len(),
                types.len()
            ),
        );
    }
    let max_retries = match raw.max_retries {
        None => DEFAULT_MAX_RETRIES,
        Some(n) if (0..=MAX_RETRIES).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            let why = format!("must be a whole number from 0 to {MAX_RETRIES}");
            return cx.invalid(n.span(), "watch.launch.max_retries", why);
        }
    };
    let max_machines = match raw.max_machines {
        None => None,
        Some(n) if (1..=super::watch::MAX_REPEATS).contains(n.get_ref()) => {
            Some(*n.get_ref() as u32)
        }
        Some(n) => {
            let why = format!(
                "must be a whole number from 1 to {}",
                super::watch::MAX_REPEATS
            );
            return cx.invalid(n.span(), "watch.launch.max_machines", why);
        }
    };
    Ok(Launch {
        template: template.to_owned(),
        version,
        subnets: ids,
        instance_types: types,
        market: raw.market.unwrap_or_default(),
        max_retries,
        max_machines,
        mix_types: raw.mix_types.unwrap_or(false),
    })
}

/// A launch template id (`lt-` and 17 hex digits) or name (EC2: 3 to 128 characters of
/// letters, digits and `( ) . - / _`).
fn is_template(s: &str) -> bool {
    let id = s
        .strip_prefix("lt-")
        .is_some_and(|h| h.len() == 17 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let name = (3..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"().-/_".contains(&b));
    id || name
}

/// `subnet-` and 8 or 17 hex digits.
fn is_subnet(s: &str) -> bool {
    s.strip_prefix("subnet-")
        .is_some_and(|h| matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A family and a size, e.g. `g5.xlarge`, `p4d.24xlarge`, `u-6tb1.metal`.
fn is_instance_type(s: &str) -> bool {
    let Some((family, size)) = s.split_once('.') else {
        return false;
    };
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    s.len() <= 64 && word(family) && word(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_ids_or_names() {
        assert!(is_template("lt-0123456789abcdef0"));
        assert!(is_template("gpu-trainer_v2"));
        assert!(!is_template("lt"));
        assert!(!is_template("has space"));
        assert!(!is_template(&"x".repeat(129)));
    }

    #[test]
    fn subnets_have_eight_or_seventeen_hex_digits() {
        assert!(is_subnet("subnet-0123456789abcdef0"));
        assert!(is_subnet("subnet-01234567"));
        assert!(!is_subnet("subnet-0123"));
        assert!(!is_subnet("sg-01234567"));
    }

    #[test]
    fn instance_types_are_a_family_and_a_size() {
        for t in ["g5.xlarge", "p4d.24xlarge", "u-6tb1.metal", "t3.micro"] {
            assert!(is_instance_type(t), "{t}");
        }
        for t in ["g5", "G5.xlarge", ".xlarge", "g5.", "g5 .xlarge"] {
            assert!(!is_instance_type(t), "{t}");
        }
    }
}
