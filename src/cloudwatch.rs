//! CloudWatch: the recent averages of one instance metric, for `idle_stop`.
//!
//! This is one call, `GetMetricStatistics`, over CloudWatch's query protocol (form-encoded
//! POST, XML answer), signed with SigV4 from the same credential chain as EC2. The Rust
//! CloudWatch SDK would add minutes of build for that one call, and it speaks a newer wire
//! protocol (RPC v2 CBOR) that local emulators such as moto do not serve.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use chrono::{DateTime, Utc};

use crate::retry::{self, Retryable};

/// The API version of CloudWatch's query protocol.
const VERSION: &str = "2010-08-01";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("CloudWatch {code}: {message}")]
    Api {
        code: String,
        message: String,
        retry: bool,
    },
    #[error("CloudWatch answered {0}")]
    Status(u16),
    #[error("cannot reach CloudWatch: {0}")]
    Transport(String),
    #[error("cannot sign the CloudWatch request: {0}")]
    Signing(String),
    #[error("CloudWatch did not answer within {0:?}")]
    Timeout(Duration),
}

impl Retryable for Error {
    fn retry(&self) -> retry::Retry {
        match self {
            Error::Api { retry: true, .. } | Error::Transport(_) | Error::Timeout(_) => {
                retry::Retry::Backoff
            }
            Error::Status(s) if *s >= 500 => retry::Retry::Backoff,
            _ => retry::Retry::Never,
        }
    }

    fn timed_out(after: Duration) -> Self {
        Error::Timeout(after)
    }
}

/// What to ask CloudWatch about one instance.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub namespace: &'a str,
    pub metric: &'a str,
    pub instance_id: &'a str,
    /// Dimensions beside `InstanceId`, as the metric was published with.
    pub dimensions: &'a BTreeMap<String, String>,
    pub window: Duration,
    /// The end of the window: AWS's time now (see [`crate::ec2::Clock`]).
    pub end: DateTime<Utc>,
}

/// The domain of AWS endpoints in `region`'s partition, as AWS's own endpoint rules name
/// it: China's regions are under `amazonaws.com.cn`, the isolated ones under their own.
fn dns_suffix(region: &str) -> &'static str {
    match region {
        r if r.starts_with("cn-") => "amazonaws.com.cn",
        r if r.starts_with("us-isob-") => "sc2s.sgov.gov",
        r if r.starts_with("us-iso-") => "c2s.ic.gov",
        _ => "amazonaws.com",
    }
}

/// CloudWatch answers at most 1,440 datapoints per call.
const MAX_DATAPOINTS: u64 = 1440;

/// The period, in seconds, that covers `window` in at most 1,440 datapoints: one minute,
/// or a longer multiple of a minute for windows beyond a day.
pub fn period(window: Duration) -> u64 {
    let minutes = window.as_secs().div_ceil(60);
    minutes.div_ceil(MAX_DATAPOINTS).max(1) * 60
}

/// A CloudWatch client for one region and credential set.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    policy: retry::Policy,
}

impl CloudWatch {
    /// A client using the region, credentials and endpoint of an AWS SDK config.
    pub fn new(config: &SdkConfig, policy: retry::Policy) -> anyhow::Result<CloudWatch> {
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| anyhow::anyhow!("no AWS region: set aws.region or AWS_REGION"))?;
        let endpoint = match config.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://monitoring.{region}.{}", dns_suffix(&region)),
        };
        let http = crate::http::client(&policy)?;
        Ok(CloudWatch {
            http,
            endpoint,
            region,
            credentials: config.credentials_provider(),
            policy,
        })
    }

    /// The one-minute averages of the metric over the last `window`, oldest first. Empty
    /// when CloudWatch has no data for it.
    pub async fn averages(&self, q: &Query<'_>) -> Result<Vec<f64>, Error> {
        let start = q.end - chrono::Duration::from_std(q.window).unwrap_or_default();
        let (start, end, period) = (
            crate::rfc3339(start),
            crate::rfc3339(q.end),
            period(q.window).to_string(),
        );
        let mut form: Vec<(String, &str)> = vec![
            ("Action".into(), "GetMetricStatistics"),
            ("Version".into(), VERSION),
            ("Namespace".into(), q.namespace),
            ("MetricName".into(), q.metric),
            ("Dimensions.member.1.Name".into(), "InstanceId"),
            ("Dimensions.member.1.Value".into(), q.instance_id),
        ];
        for (n, (name, value)) in q.dimensions.iter().enumerate() {
            form.push((format!("Dimensions.member.{}.Name", n + 2), name));
            form.push((format!("Dimensions.member.{}.Value", n + 2), value));
        }
        form.extend([
            ("StartTime".into(), start.as_str()),
            ("EndTime".into(), end.as_str()),
            ("Period".into(), period.as_str()),
            ("Statistics.member.1".into(), "Average"),
        ]);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let body = form_urlencoded(&form);
        let xml = self
            .policy
            .run("GetMetricStatistics", || self.call(&body))
            .await?;
        let mut points: Vec<(String, f64)> = members(&xml)
            .filter_map(|m| {
                Some((
                    value(m, "Timestamp")?.to_owned(),
                    value(m, "Average")?.parse().ok()?,
                ))
            })
            .collect();
        points.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(points.into_iter().map(|(_, v)| v).collect())
    }

    async fn call(&self, body: &str) -> Result<String, Error> {
        let url = format!("{}/", self.endpoint);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut request = self
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body.to_owned());
        for (name, value) in self.sign(&url, content_type, body).await? {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(crate::error_chain(&e.without_url())))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Error::Transport(crate::error_chain(&e.without_url())))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        match value(&text, "Code") {
            Some(code) => Err(Error::Api {
                retry: status >= 500 || code.contains("Throttl"),
                code: code.to_owned(),
                message: value(&text, "Message").unwrap_or("").to_owned(),
            }),
            None => Err(Error::Status(status)),
        }
    }

    /// The SigV4 headers for a POST of `body` to `url`.
    async fn sign(
        &self,
        url: &str,
        content_type: &str,
        body: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| Error::Signing("no AWS credentials".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| Error::Signing(crate::error_chain(&e)))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("monitoring")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::Signing(e.to_string()))?
            .into();
        let headers = [("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| Error::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::Signing(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect())
    }
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                crate::percent_encode(k, b""),
                crate::percent_encode(v, b"")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encoding as SigV4 expects it: everything but unreserved characters.
/// The text of the first `<tag>…</tag>` in `xml`. The answers read here are small, flat and
/// fixed in shape; a full XML parser would buy nothing.
fn value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim())
}

/// Each `<member>…</member>` of the answer's datapoints.
fn members(xml: &str) -> impl Iterator<Item = &str> {
    xml.split("<member>")
        .skip(1)
        .filter_map(|m| m.split("</member>").next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_in_the_regions_partition() {
        assert_eq!(dns_suffix("eu-west-1"), "amazonaws.com");
        assert_eq!(dns_suffix("us-gov-west-1"), "amazonaws.com");
        assert_eq!(dns_suffix("cn-north-1"), "amazonaws.com.cn");
        assert_eq!(dns_suffix("cn-northwest-1"), "amazonaws.com.cn");
        assert_eq!(dns_suffix("us-iso-east-1"), "c2s.ic.gov");
    }

    #[test]
    fn a_day_or_less_is_asked_by_the_minute() {
        assert_eq!(period(Duration::from_secs(30 * 60)), 60);
        assert_eq!(period(Duration::from_secs(24 * 3600)), 60);
    }

    #[test]
    fn a_longer_window_asks_for_longer_periods_within_the_limit() {
        for hours in [25, 48, 72, 24 * 15] {
            let window = Duration::from_secs(hours * 3600);
            let p = period(window);
            assert_eq!(p % 60, 0, "a multiple of a minute");
            assert!(
                window.as_secs().div_ceil(p) <= MAX_DATAPOINTS,
                "{hours} h: {p} s"
            );
        }
        assert_eq!(period(Duration::from_secs(48 * 3600)), 120);
    }
}
