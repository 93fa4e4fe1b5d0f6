//! The instance metadata service, as the job on a training machine asks it which instance
//! it runs on and in which region (SPEC §13). IMDSv2 only, through aws-config's own client:
//! it asks for a session token first (`PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds`), sends it with every read
//! (`X-aws-ec2-metadata-token`), renews it, retries, and never falls back to IMDSv1's bare
//! GETs; it reads `AWS_EC2_METADATA_SERVICE_ENDPOINT` (and the profile's
//! `ec2_metadata_service_endpoint`). `AWS_EC2_METADATA_DISABLED` is read here, since that
//! client does not read it (only aws-config's providers built on it do).

use aws_config::imds::client::error::ImdsError;

use crate::retry;

/// Where IMDS keeps the instance's id.
pub const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
/// Where IMDS keeps the instance's region.
pub const REGION: &str = "/latest/meta-data/placement/region";

/// Why the metadata service could not say who this machine is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "reading instance metadata is turned off (AWS_EC2_METADATA_DISABLED): pushwake report \
         finds its instance through it"
    )]
    Disabled,
    #[error("reading the {what} from the instance metadata service (IMDSv2) failed: {why}")]
    Read { what: &'static str, why: String },
    #[error("the instance metadata service gave {value:?} as the {what}, which is not one")]
    Malformed { what: &'static str, value: String },
}

/// The metadata service of the machine this runs on.
#[derive(Debug)]
pub struct Metadata {
    client: aws_config::imds::Client,
}

impl Metadata {
    /// A client under `policy`'s attempts and deadline; refused when
    /// `AWS_EC2_METADATA_DISABLED` says not to ask.
    pub fn new(policy: retry::Policy) -> Result<Metadata, Error> {
        let off = std::env::var("AWS_EC2_METADATA_DISABLED").ok();
        if disabled(off.as_deref()) {
            return Err(Error::Disabled);
        }
        let client = aws_config::imds::Client::builder()
            .max_attempts(policy.attempts)
            .operation_timeout(policy.deadline)
            .build();
        Ok(Metadata { client })
    }

    /// This machine's instance id.
    pub async fn instance_id(&self) -> Result<String, Error> {
        let what = "instance id";
        let id = self.get(what, INSTANCE_ID).await?;
        if !crate::is_instance_id(&id) {
            return Err(Error::Malformed { what, value: id });
        }
        Ok(id)
    }

    /// The region this machine runs in, e.g. `eu-west-1`.
    pub async fn region(&self) -> Result<String, Error> {
        let what = "region";
        let region = self.get(what, REGION).await?;
        let ok = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(Error::Malformed {
                what,
                value: region,
            });
        }
        Ok(region)
    }

    async fn get(&self, what: &'static str, path: &str) -> Result<String, Error> {
        match self.client.get(path).await {
            Ok(text) => Ok(String::from(text).trim().to_owned()),
            Err(e) => Err(Error::Read { what, why: why(&e) }),
        }
    }
}

/// What went wrong, in words: the SDK's own text of an error answer prints the whole
/// response.
fn why(e: &ImdsError) -> String {
    match e {
        // Unanswered (no connection, or the answer dropped on the way: a container behind
        // the default hop limit of 1 never sees it, and the request times out).
        ImdsError::FailedToLoadToken(t) => format!(
            "no answer to the session token request ({}): in a container on an EC2 \
             instance, raise its metadata hop limit to 2 (aws ec2 \
             modify-instance-metadata-options --http-put-response-hop-limit 2); off EC2 there \
             is no instance metadata service",
            if t.is_dispatch_failure() {
                "no connection".to_owned()
            } else {
                crate::error_chain(e)
            }
        ),
        ImdsError::ErrorResponse(r) => format!("it answered {}", r.response().status().as_u16()),
        other => crate::error_chain(other),
    }
}

/// Whether `AWS_EC2_METADATA_DISABLED` turns the service off, as the AWS SDKs read it.
fn disabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_turns_it_off() {
        assert!(disabled(Some("true")) && disabled(Some("TRUE")));
        for v in [None, Some(""), Some("false"), Some("1"), Some("no")] {
            assert!(!disabled(v), "{v:?}");
        }
    }
}
