//! pushwake starts EC2 machines when a GitHub branch moves, and tells Slack.
//!
//! It polls GitHub from behind NAT (no inbound port), keeps the last handled commit on
//! disk, and on a new head starts the configured instances. The binary is a thin layer
//! over this library; see `ARCHITECTURE.md` for the map.
//!
//! - [`config`]: the config file, parsed then validated into [`config::Settings`].
//! - [`state`]: the on-disk record and the pass lock.
//! - [`github`], [`ec2`], [`cloudwatch`], [`slack`]: one module per external system.
//! - [`plan`]: what to do for a run, decided from what EC2 describes (pure).
//! - [`launch`]: a watch's instances, and the EC2 calls that carry a plan out.
//! - [`tags`]: the `pushwake:*` tags written on the instances, and what they prove.
//! - [`deployment`]: who owns the machines pushwake starts, and where it started them.
//! - [`reap`]: which instances the stop rules say to stop.
//! - [`results`]: gathering each run's results, and what a verdict compares.
//! - [`stats`]: summaries, Welch's t-test, the sequential design's looks, Holm.
//! - [`plot`]: the SVG of `pushwake results --plot`.
//! - [`pass`]: one pass over all watches; the only place that orders side effects.
//! - [`daemon`]: the loop around passes, driven by [`daemon::Control`] messages.
//! - [`report`]: every word pushwake says: Slack messages, log lines, verdicts, tables.
//! - [`status`]: the rows of `pushwake status`.
//! - [`metrics`]: the Prometheus textfile each pass writes.
//! - [`check`]: `pushwake check [--online]`.
//! - [`compare`]: `pushwake compare`, the verdict on two files of numbers.
//! - [`job`]: `pushwake report`, the training job's side: its results tagged, its commit read.
//! - [`imds`]: the instance metadata service (IMDSv2): which instance and region this is.
//! - [`retry`]: the one retry policy.
//! - [`http`]: the HTTP client settings every client shares.
//! - [`redact`]: masking secrets in texts quoted from peers.
//! - [`sdk`]: reading AWS SDK failures, for the EC2 and S3 clients.

pub mod aws;
pub mod check;
pub mod cloudwatch;
pub mod compare;
pub mod config;
pub mod cost;
pub mod daemon;
pub mod deployment;
pub mod ec2;
pub mod github;
pub mod http;
pub mod imds;
pub mod job;
pub mod judgement;
pub mod launch;
pub mod lease;
pub mod metrics;
pub mod pass;
pub mod placement;
pub mod plan;
pub mod plot;
pub mod pricing;
pub mod reap;
pub mod redact;
pub mod report;
pub mod results;
pub mod retry;
pub mod s3;
pub mod sdk;
pub mod slack;
pub mod state;
pub mod stats;
pub mod status;
pub mod store;
pub mod tags;

/// Percent-encodes every byte of `s` but RFC 3986's unreserved characters and `keep`: the
/// one encoder for URL paths, queries and form bodies.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `i-` and 8 or 17 lowercase hex digits, as EC2 makes instance ids.
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A time as pushwake writes it in tags, state and output: RFC 3339, UTC, whole seconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A time as tags keep it: EC2 gives launch times to the millisecond, tags hold seconds.
pub fn whole_seconds(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// FNV-1a, 64 bits: a hash that is the same across builds and platforms (unlike std's),
/// for names and fingerprints kept in tags and state.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// An error and its sources on one line, as `anyhow` prints them with `{:#}`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_instance_id_is_what_ec2_makes() {
        assert!(super::is_instance_id("i-0123abcd"));
        assert!(super::is_instance_id("i-0123456789abcdef0"));
        for id in [
            "",
            "i-",
            "i-0123456789ABCDEF0",
            "i-0123456789abcdef",
            "0123456789abcdef0",
            "i-0123456",
            "<html>",
            "ami-0123abcd",
        ] {
            assert!(!super::is_instance_id(id), "{id}");
        }
    }
}
