//! S3, as far as the shared state needs it: read an object with its ETag, and write one
//! only if it is still what was read (`If-Match`) or does not exist yet (`If-None-Match:
//! *`). Those two conditions are all a lease and a fenced state need.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};

use crate::config::StateUrl;
use crate::ec2::Clock;
use crate::retry::{self, Retryable};
use crate::sdk::Failure;

/// An object as read: its bytes, and which version of it they are.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub version: Version,
}

/// Which version of an object was read: its ETag, which a conditional write names, and
/// when it was written, on S3's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub etag: String,
    pub modified: DateTime<Utc>,
}

/// What a write may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the object must not exist yet (`If-None-Match: *`).
    Absent,
    /// The object as read, by its ETag (`If-Match`).
    Etag(String),
}

/// What kind of failure an S3 call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 412: the object is not what the write expected; another agent wrote it.
    Changed,
    /// 404 `NoSuchKey` to a write that expected the object (`If-Match`): it was deleted.
    Missing,
    /// 409 `ConditionalRequestConflict`: two conditional writes raced; worth retrying.
    Conflict,
    /// Throttling (503 `SlowDown`), a 5xx, a dropped connection: worth retrying.
    Transient,
    /// 403: the credentials may not do this to this key.
    Refused,
    /// Anything else: a missing bucket, no credentials or region.
    Other,
}

/// An S3 call that failed.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    /// `GetObject` or `PutObject`.
    pub action: &'static str,
    pub key: String,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3 {} of {} failed: ", self.action, self.key)?;
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.message)?;
        if self.kind == Kind::Refused {
            write!(
                f,
                " (s3:{} on this key is not allowed for these AWS credentials; grant it in \
                 their IAM policy or the bucket policy)",
                self.action
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl Retryable for Error {
    fn retry(&self) -> retry::Retry {
        match self.kind {
            Kind::Conflict | Kind::Transient => retry::Retry::Backoff,
            _ => retry::Retry::Never,
        }
    }

    fn timed_out(after: Duration) -> Self {
        Error {
            kind: Kind::Transient,
            action: "call",
            key: String::new(),
            code: None,
            message: format!("no answer within {after:?}"),
        }
    }
}

/// A client of one bucket.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    policy: retry::Policy,
    clock: Clock,
}

impl S3 {
    /// A client of `url`'s bucket from an SDK config made elsewhere. With an endpoint of
    /// its own (an emulator, a gateway) buckets are addressed by path, since
    /// `bucket.127.0.0.1` has no DNS name. Checksums are left to TLS and the ETag, as S3
    /// requires none for these calls and emulators differ on the newer ones.
    pub fn new(config: &aws_config::SdkConfig, url: &StateUrl, policy: retry::Policy) -> S3 {
        let clock = Clock::default();
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .interceptor(clock.clone())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
                    .operation_attempt_timeout(policy.timeout)
                    .build(),
            )
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: url.bucket.clone(),
            policy,
            clock,
        }
    }

    /// S3's time now, from the `Date` of its answers (see [`Clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Reads `key`; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Object>, Error> {
        let call = || async {
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
                Err(e) => return Err(classify("GetObject", key, e)),
            };
            let etag = out.e_tag().unwrap_or_default().to_owned();
            let modified = out
                .last_modified()
                .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_else(|| self.now());
            let bytes = out.body.collect().await.map_err(|e| Error {
                kind: Kind::Transient,
                action: "GetObject",
                key: key.to_owned(),
                code: None,
                message: crate::error_chain(&e),
            })?;
            Ok(Some(Object {
                bytes: bytes.into_bytes().to_vec(),
                version: Version { etag, modified },
            }))
        };
        self.policy.run("S3 GetObject", call).await
    }

    /// Writes `bytes` to `key` if it is as `expect`ed; returns the new ETag. An object
    /// that changed meanwhile is an error of kind [`Kind::Changed`]; one deleted meanwhile,
    /// of kind [`Kind::Missing`]. A 412 is read back first: an attempt whose answer was
    /// lost may have gone through, and its retry found the object as it left it. If it
    /// holds exactly `bytes`, the write is taken as done.
    pub async fn put(&self, key: &str, bytes: &[u8], expect: &Expect) -> Result<String, Error> {
        let err = match self.put_once(key, bytes, expect).await {
            Err(e) if e.kind == Kind::Changed => e,
            other => return other,
        };
        let now = self.get(key).await?;
        match judge_412(expect, bytes, now.as_ref()) {
            After412::Written(etag) => {
                tracing::debug!("S3 PutObject of {key}: an earlier attempt had gone through");
                Ok(etag)
            }
            After412::Deleted => Err(Error {
                kind: Kind::Missing,
                code: Some("NoSuchKey".into()),
                message: "the object was deleted since it was read".into(),
                ..err
            }),
            After412::Changed => Err(err),
        }
    }

    async fn put_once(&self, key: &str, bytes: &[u8], expect: &Expect) -> Result<String, Error> {
        let call = || async {
            let request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(bytes.to_vec()));
            let request = match expect {
                Expect::Absent => request.if_none_match("*"),
                Expect::Etag(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(out) => Ok(out.e_tag().unwrap_or_default().to_owned()),
                Err(e) => Err(classify("PutObject", key, e)),
            }
        };
        self.policy.run("S3 PutObject", call).await
    }
}

/// What a 412 to a conditional write means, from the object as read right after.
#[derive(Debug, PartialEq, Eq)]
enum After412 {
    /// It holds exactly what was written, by an attempt whose answer was lost: done, with
    /// this ETag.
    Written(String),
    /// It is gone, though the write expected it: deleted.
    Deleted,
    /// Another writer's bytes: a lost race.
    Changed,
}

fn judge_412(expect: &Expect, written: &[u8], now: Option<&Object>) -> After412 {
    match (now, expect) {
        (Some(o), _) if o.bytes == written => After412::Written(o.version.etag.clone()),
        (None, Expect::Etag(_)) => After412::Deleted,
        _ => After412::Changed,
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    action: &'static str,
    key: &str,
    err: SdkError<E>,
) -> Error {
    let f = Failure::of(&err);
    Error {
        kind: kind_of(&f),
        action,
        key: key.to_owned(),
        code: f.code,
        message: f.message,
    }
}

fn kind_of(f: &Failure) -> Kind {
    match (f.code.as_deref(), f.status) {
        (Some("PreconditionFailed"), _) | (_, Some(412)) => Kind::Changed,
        (Some("NoSuchKey"), _) => Kind::Missing,
        (Some("ConditionalRequestConflict"), _) | (_, Some(409)) => Kind::Conflict,
        (Some("AccessDenied" | "AllAccessDisabled"), _) | (_, Some(403)) => Kind::Refused,
        (Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout"), _) => {
            Kind::Transient
        }
        _ if f.transient => Kind::Transient,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: Kind, code: &str) -> Error {
        Error {
            kind,
            action: "PutObject",
            key: "pushwake/state.json".into(),
            code: Some(code.into()),
            message: "S3's own words.".into(),
        }
    }

    #[test]
    fn s3s_answers_are_sorted_by_what_to_do() {
        for (code, status, kind, retried) in [
            ("PreconditionFailed", 412, Kind::Changed, false),
            ("ConditionalRequestConflict", 409, Kind::Conflict, true),
            ("AccessDenied", 403, Kind::Refused, false),
            ("SlowDown", 503, Kind::Transient, true),
            ("InternalError", 500, Kind::Transient, true),
            ("NoSuchBucket", 404, Kind::Other, false),
            ("NoSuchKey", 404, Kind::Missing, false),
        ] {
            let failure = Failure {
                code: Some(code.into()),
                status: Some(status),
                message: String::new(),
                transient: status >= 500,
            };
            assert_eq!(kind_of(&failure), kind, "{code}");
            let again = error(kind, code).retry() == retry::Retry::Backoff;
            assert_eq!(again, retried, "{code}");
        }
    }

    #[test]
    fn a_refusal_names_the_permission() {
        let text = error(Kind::Refused, "AccessDenied").to_string();
        assert!(
            text.starts_with("S3 PutObject of pushwake/state.json failed: AccessDenied"),
            "{text}"
        );
        assert!(
            text.contains("s3:PutObject on this key is not allowed"),
            "{text}"
        );
        let text = error(Kind::Changed, "PreconditionFailed").to_string();
        assert!(!text.contains("IAM"), "{text}");
    }

    #[test]
    fn a_412_is_told_apart_by_what_the_object_holds_after() {
        let object = |bytes: &[u8]| Object {
            bytes: bytes.to_vec(),
            version: Version {
                etag: "\"e2\"".into(),
                modified: Utc::now(),
            },
        };
        let renew = Expect::Etag("\"e1\"".into());
        let mine = object(b"{\"holder\":\"a\"}");
        assert_eq!(
            judge_412(&renew, &mine.bytes, Some(&mine)),
            After412::Written("\"e2\"".into()),
            "a retry after an answer lost: our own bytes"
        );
        let theirs = object(b"{\"holder\":\"b\"}");
        assert_eq!(
            judge_412(&renew, &mine.bytes, Some(&theirs)),
            After412::Changed
        );
        assert_eq!(judge_412(&renew, &mine.bytes, None), After412::Deleted);
        assert_eq!(
            judge_412(&Expect::Absent, &mine.bytes, None),
            After412::Changed,
            "a create refused, then the object gone: a race all the same"
        );
        assert_eq!(
            judge_412(&Expect::Absent, &mine.bytes, Some(&mine)),
            After412::Written("\"e2\"".into())
        );
    }
}
