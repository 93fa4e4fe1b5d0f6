//! One `[[watch]]` table as written, and its validation into a [`Watch`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::launch::{RawLaunch, launch};
use super::raw::{Ctx, parse_duration};
use super::results::{RawResults, results};
use super::toml_error::segment;
use super::{ConfigError, DEFAULT_SKIP_MARKER, IdleStop, OnBusy, Paths, Repo, Target, Watch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    repo: Spanned<String>,
    branch: Spanned<String>,
    instances: Option<Spanned<Vec<Spanned<String>>>>,
    instance_tags: Option<Spanned<BTreeMap<String, String>>>,
    repeats: Option<Spanned<i64>>,
    paths: Option<Spanned<Vec<String>>>,
    skip_markers: Option<Vec<String>>,
    max_runtime: Option<Spanned<String>>,
    idle_stop: Option<Spanned<RawIdleStop>>,
    results: Option<Spanned<RawResults>>,
    on_busy: Option<OnBusy>,
    region: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    launch: Option<Spanned<RawLaunch>>,
    budget: Option<super::cost::RawBudget>,
}

/// The most repeats of one run: each is a machine start and a value in the verdict.
pub(super) const MAX_REPEATS: i64 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdleStop {
    metric: Option<String>,
    namespace: Option<String>,
    below: Option<f64>,
    #[serde(rename = "for")]
    window: Option<Spanned<String>>,
    dimensions: Option<BTreeMap<String, String>>,
}

const DEFAULT_IDLE_METRIC: &str = "CPUUtilization";
const DEFAULT_IDLE_NAMESPACE: &str = "AWS/EC2";
const DEFAULT_IDLE_BELOW: f64 = 5.0;
const DEFAULT_IDLE_WINDOW: Duration = Duration::from_secs(30 * 60);
/// CloudWatch's basic monitoring has a datapoint every five minutes; a shorter window could
/// see none.
const MIN_IDLE_WINDOW: Duration = Duration::from_secs(60);

/// The watches, each with its own `max_runtime` or else `default_max_runtime`.
pub(super) fn watches(
    cx: &Ctx,
    raw: Vec<Spanned<RawWatch>>,
    default_max_runtime: Option<Duration>,
) -> Result<Vec<Watch>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::InvalidNoLine {
            path: cx.path.to_owned(),
            key: "watch".into(),
            message: "add at least one [[watch]] with repo, branch and instances".into(),
        });
    }
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (n, w) in raw.into_iter().enumerate() {
        let span = w.span();
        let mut watch = watch(cx, span.clone(), w.into_inner()).map_err(|e| numbered(e, n))?;
        watch.max_runtime = watch.max_runtime.or(default_max_runtime);
        let key = (watch.repo.clone(), watch.branch.clone());
        if let Some(first) = seen.insert(key, n) {
            return cx.invalid(
                span,
                &format!("watch[{n}]"),
                format!(
                    "the same repo and branch as watch[{first}]; merge the two [[watch]] entries"
                ),
            );
        }
        out.push(watch);
    }
    Ok(out)
}

/// `err` about the watch numbered `n` (from 0): its key `watch.…` becomes `watch[n].…`.
fn numbered(mut err: ConfigError, n: usize) -> ConfigError {
    if let ConfigError::Invalid { key, .. } | ConfigError::InvalidNoLine { key, .. } = &mut err
        && let Some(rest) = key.strip_prefix("watch")
        && (rest.is_empty() || rest.starts_with('.'))
    {
        *key = format!("watch[{n}]{rest}");
    }
    err
}

fn watch(cx: &Ctx, span: std::ops::Range<usize>, w: RawWatch) -> Result<Watch, ConfigError> {
    let repo = parse_repo(cx, &w.repo)?;
    let branch = w.branch.get_ref();
    if let Err(why) = check_branch(branch) {
        return cx.invalid(w.branch.span(), "watch.branch", why);
    }
    let instances = match w.instances {
        Some(list) => instance_ids(cx, list)?,
        None => Vec::new(),
    };
    let instance_tags = match w.instance_tags {
        Some(tags) if tags.get_ref().is_empty() => {
            return cx.invalid(tags.span(), "watch.instance_tags", "name at least one tag");
        }
        Some(tags) => tags.into_inner(),
        None => BTreeMap::new(),
    };
    let pool = !(instances.is_empty() && instance_tags.is_empty());
    if !pool && w.launch.is_none() {
        return cx.invalid(
            span,
            "watch.instances",
            "list at least one instance id, select instances with instance_tags, or launch \
             them from a template with launch",
        );
    }
    if !pool && w.repeats.is_none() {
        return cx.invalid(
            span,
            "watch.repeats",
            "say how many repeats each commit gets: without a pool there is no default",
        );
    }
    let launch = match w.launch {
        Some(l) => Some(launch(cx, l)?),
        None => None,
    };
    let repeats = match w.repeats {
        Some(n) if !(1..=MAX_REPEATS).contains(n.get_ref()) => {
            let why = format!("must be a whole number from 1 to {MAX_REPEATS}");
            return cx.invalid(n.span(), "watch.repeats", why);
        }
        Some(n) => Some(*n.get_ref() as u32),
        None => None,
    };
    let paths = match w.paths {
        None => None,
        Some(p) if p.get_ref().is_empty() => {
            return cx.invalid(
                p.span(),
                "watch.paths",
                "list at least one path, or leave it out",
            );
        }
        Some(p) => {
            let at = p.span();
            match Paths::new(p.into_inner()) {
                Ok(paths) => Some(paths),
                // globset's own words quote the pattern.
                Err(e) => return cx.invalid(at, "watch.paths", e.kind().to_string()),
            }
        }
    };
    let skip_markers = w
        .skip_markers
        .unwrap_or_else(|| vec![DEFAULT_SKIP_MARKER.to_owned()])
        .into_iter()
        .filter(|m| !m.trim().is_empty())
        .collect();
    let max_runtime = match &w.max_runtime {
        Some(s) => Some(parse_duration(cx, s, "watch.max_runtime")?),
        None => None,
    };
    let idle_stop = match w.idle_stop {
        Some(idle) => Some(idle_stop(cx, idle)?),
        None => None,
    };
    let results = match w.results {
        Some(r) => {
            let span = r.span();
            let r = results(cx, r)?;
            // A round is the watch's repeats; the budget must hold at least one.
            if let (Some(most), Some(round)) = (r.max_repeats, repeats)
                && most < round
            {
                let why = format!("is below repeats ({round}): a round would not fit");
                return cx.invalid(span, "watch.results.max_repeats", why);
            }
            Some(r)
        }
        None => None,
    };
    let target = Target {
        region: match w.region {
            Some(r) if r.get_ref().trim().is_empty() => {
                return cx.invalid(r.span(), "watch.region", "must not be empty");
            }
            r => r.map(Spanned::into_inner),
        },
        role_arn: match w.role_arn {
            Some(arn) => match check_role_arn(arn.get_ref()) {
                Ok(()) => Some(arn.into_inner()),
                Err(why) => return cx.invalid(arn.span(), "watch.role_arn", why),
            },
            None => None,
        },
    };
    Ok(Watch {
        repo,
        branch: w.branch.into_inner(),
        instances,
        instance_tags,
        repeats,
        paths,
        skip_markers,
        max_runtime,
        idle_stop,
        results,
        on_busy: w.on_busy.unwrap_or_default(),
        target,
        launch,
        budget: match w.budget {
            Some(b) => super::cost::budget(cx, b, "watch.budget", true)?,
            None => Default::default(),
        },
    })
}

/// An IAM role's ARN: `arn:<partition>:iam::<12-digit account>:role/<path and name>`.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(())
    } else {
        Err("not an IAM role ARN; write e.g. \"arn:aws:iam::123456789012:role/pushwake\"".into())
    }
}

fn instance_ids(cx: &Ctx, list: Spanned<Vec<Spanned<String>>>) -> Result<Vec<String>, ConfigError> {
    let mut ids: Vec<String> = Vec::with_capacity(list.get_ref().len());
    for (i, id) in list.into_inner().into_iter().enumerate() {
        let key = format!("watch.instances[{i}]");
        if !crate::is_instance_id(id.get_ref()) {
            return cx.invalid(
                id.span(),
                &key,
                "not an EC2 instance id (\"i-\" and 8 or 17 hex digits)",
            );
        }
        if let Some(j) = ids.iter().position(|seen| seen == id.get_ref()) {
            return cx.invalid(id.span(), &key, format!("the same id as instances[{j}]"));
        }
        ids.push(id.into_inner());
    }
    Ok(ids)
}

fn idle_stop(cx: &Ctx, raw: Spanned<RawIdleStop>) -> Result<IdleStop, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let window = match &raw.window {
        Some(s) => parse_duration(cx, s, "watch.idle_stop.for")?,
        None => DEFAULT_IDLE_WINDOW,
    };
    if window < MIN_IDLE_WINDOW {
        return cx.invalid(span, "watch.idle_stop.for", "must be at least one minute");
    }
    let below = raw.below.unwrap_or(DEFAULT_IDLE_BELOW);
    if !below.is_finite() {
        return cx.invalid(span, "watch.idle_stop.below", "must be a number");
    }
    let nonempty = |v: Option<String>, default: &str, key: &str| match v {
        Some(s) if s.trim().is_empty() => cx.invalid(span.clone(), key, "must not be empty"),
        Some(s) => Ok(s),
        None => Ok(default.to_owned()),
    };
    Ok(IdleStop {
        metric: nonempty(raw.metric, DEFAULT_IDLE_METRIC, "watch.idle_stop.metric")?,
        namespace: nonempty(
            raw.namespace,
            DEFAULT_IDLE_NAMESPACE,
            "watch.idle_stop.namespace",
        )?,
        below,
        window,
        dimensions: idle_dimensions(cx, &span, raw.dimensions.unwrap_or_default())?,
    })
}

/// Extra dimensions of an `idle_stop` metric. `InstanceId` is pushwake's to set, and
/// CloudWatch takes at most 30 dimensions.
fn idle_dimensions(
    cx: &Ctx,
    span: &std::ops::Range<usize>,
    dims: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let key = "watch.idle_stop.dimensions";
    if dims.contains_key("InstanceId") {
        return cx.invalid(
            span.clone(),
            key,
            "InstanceId is set by pushwake, per instance",
        );
    }
    if dims.len() > 29 {
        return cx.invalid(span.clone(), key, "CloudWatch takes at most 30 dimensions");
    }
    if let Some((k, _)) = dims.iter().find(|(k, v)| k.is_empty() || v.is_empty()) {
        let key = format!("{key}.{}", segment(k));
        return cx.invalid(span.clone(), &key, "needs a name and a value");
    }
    Ok(dims)
}

fn parse_repo(cx: &Ctx, s: &Spanned<String>) -> Result<Repo, ConfigError> {
    let bad = || cx.invalid(s.span(), "watch.repo", "not of the form \"owner/name\"");
    let Some((owner, name)) = s.get_ref().split_once('/') else {
        return bad();
    };
    let owner_ok = !owner.is_empty()
        && owner.len() <= 39
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let name_ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !(owner_ok && name_ok) {
        return bad();
    }
    Ok(Repo {
        owner: owner.to_owned(),
        name: name.to_owned(),
    })
}

/// The parts of `git check-ref-format` that matter for a name we put in a URL.
fn check_branch(branch: &str) -> Result<(), &'static str> {
    if branch.is_empty() {
        return Err("is empty");
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.contains("//") {
        return Err("has an empty path component");
    }
    if branch.contains("..") || branch.contains("@{") || branch.ends_with(".lock") {
        return Err("is not a valid git branch name");
    }
    if branch
        .chars()
        .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err("contains a character git does not allow in branch names");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_name_an_iam_role() {
        assert!(check_role_arn("arn:aws:iam::123456789012:role/pushwake").is_ok());
        assert!(check_role_arn("arn:aws-cn:iam::123456789012:role/ml/pushwake").is_ok());
        for bad in [
            "pushwake",
            "arn:aws:iam::123456789012:user/pushwake",
            "arn:aws:iam::1234:role/pushwake",
            "arn:aws:sts::123456789012:role/pushwake",
            "arn:aws:iam::123456789012:role/",
        ] {
            let why = check_role_arn(bad).unwrap_err();
            assert!(why.starts_with("not an IAM role ARN"), "{bad}: {why}");
        }
    }

    #[test]
    fn branch_names_follow_git() {
        assert!(check_branch("release/v2").is_ok());
        assert!(check_branch("feat/a+b").is_ok());
        for bad in [
            "", "/x", "x/", "a//b", "a..b", "x.lock", "a b", "a~1", "a:b", "a@{1}",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
    }
}
