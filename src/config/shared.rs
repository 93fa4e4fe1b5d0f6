//! `state_url` and `lease_ttl`: the state in S3, shared by several agents.

use std::fmt;
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;
use super::raw::{Ctx, parse_duration};

/// The state in S3, and how long the leader's lease lasts unrenewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    pub url: StateUrl,
    /// A lease not renewed for this long has lapsed, and another agent takes over.
    pub lease_ttl: Duration,
}

/// `s3://bucket/prefix`: where the shared state and the lease live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUrl {
    pub bucket: String,
    /// Without slashes at either end; empty for the bucket's top.
    pub prefix: String,
}

impl StateUrl {
    pub fn parse(url: &str) -> Result<StateUrl, String> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err("not an s3:// URL; write e.g. \"s3://my-bucket/pushwake\"".into());
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|why| format!("the bucket's name {why}"))?;
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
            && !prefix.is_empty()
        {
            return Err("the prefix has an empty, . or .. part".into());
        }
        Ok(StateUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The key of the object `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl fmt::Display for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// S3's rules for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens,
/// beginning and ending with a letter or digit.
fn check_bucket(name: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may hold only lowercase letters, digits, dots and hyphens");
    }
    let ends = [name.as_bytes()[0], name.as_bytes()[name.len() - 1]];
    if !ends
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err("must begin and end with a letter or digit");
    }
    Ok(())
}

/// Three intervals: a leader may miss two passes before another takes over.
const TTL_INTERVALS: u32 = 3;

pub(super) fn shared(
    cx: &Ctx,
    url: Spanned<String>,
    ttl: Option<Spanned<String>>,
    interval: Duration,
) -> Result<Shared, ConfigError> {
    let parsed = match StateUrl::parse(url.get_ref()) {
        Ok(u) => u,
        Err(why) => return cx.invalid(url.span(), "state_url", why),
    };
    let lease_ttl = match &ttl {
        Some(s) => parse_duration(cx, s, "lease_ttl")?,
        None => (interval * TTL_INTERVALS).max(MIN_LEASE_TTL),
    };
    if let Some(s) = &ttl
        && lease_ttl < MIN_LEASE_TTL
    {
        return cx.invalid(
            s.span(),
            "lease_ttl",
            "must be at least 2s: a leader renews its lease, then needs a second for an EC2 call \
             before the lease ends",
        );
    }
    // A pass waits up to 1.1 intervals (the jitter) and takes a while itself.
    if let Some(s) = &ttl
        && lease_ttl < interval * 2
    {
        return cx.invalid(
            s.span(),
            "lease_ttl",
            "must be at least twice interval, or the leader's lease lapses between its passes",
        );
    }
    Ok(Shared {
        url: parsed,
        lease_ttl,
    })
}

/// The shortest lease a leader can act under: one renewal, then the shortest EC2 call it
/// makes (`lease::MIN_TTL` is held to it by a unit test there).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_url_names_a_bucket_and_a_prefix() {
        let u = StateUrl::parse("s3://ml-team/pushwake/team-a/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("ml-team", "pushwake/team-a")
        );
        assert_eq!(u.key("lease.json"), "pushwake/team-a/lease.json");
        assert_eq!(u.to_string(), "s3://ml-team/pushwake/team-a");
        let top = StateUrl::parse("s3://ml-team").unwrap();
        assert_eq!(top.key("state.json"), "state.json");
    }

    #[test]
    fn bad_state_urls_say_why() {
        for (url, why) in [
            ("https://ml-team/x", "not an s3:// URL"),
            ("s3://ML-Team/x", "lowercase"),
            ("s3://ab/x", "3 to 63"),
            ("s3://-ml/x", "begin and end"),
            ("s3://ml-team/a//b", "empty, . or .."),
            ("s3://ml-team/a/../b", "empty, . or .."),
        ] {
            let err = StateUrl::parse(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
