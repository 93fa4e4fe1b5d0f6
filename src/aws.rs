//! The AWS clients, built on first use and kept: one SDK config from `[aws]` and the
//! standard chain, and per [`Target`] (a watch's region and role) an EC2 client and a
//! CloudWatch client. A pass with no change builds none of them, so it needs no AWS
//! credentials, region lookup or instance-metadata probe.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::{Mutex, OnceCell};

use crate::cloudwatch::CloudWatch;
use crate::config::{AwsSettings, Target};
use crate::ec2::{self, Ec2};
use crate::retry;

/// The clients of one target.
#[derive(Debug)]
pub struct Clients {
    pub config: SdkConfig,
    pub ec2: Ec2,
    cloudwatch: OnceLock<CloudWatch>,
    policy: retry::Policy,
}

impl Clients {
    fn new(config: SdkConfig, policy: retry::Policy) -> Clients {
        Clients {
            ec2: Ec2::from_sdk_config(&config, policy),
            config,
            cloudwatch: OnceLock::new(),
            policy,
        }
    }

    pub fn cloudwatch(&self) -> anyhow::Result<&CloudWatch> {
        if let Some(cw) = self.cloudwatch.get() {
            return Ok(cw);
        }
        let cw = CloudWatch::new(&self.config, self.policy)?;
        Ok(self.cloudwatch.get_or_init(|| cw))
    }
}

/// Every AWS client pushwake uses. `[aws] endpoint_url` applies to all of them (EC2,
/// CloudWatch, S3, STS), so one emulator or gateway serves them all.
#[derive(Debug)]
pub struct Aws {
    settings: AwsSettings,
    policy: retry::Policy,
    base: OnceCell<SdkConfig>,
    targets: Mutex<HashMap<Target, Arc<Clients>>>,
}

impl Aws {
    pub fn new(settings: &AwsSettings, policy: retry::Policy) -> Aws {
        Aws {
            settings: settings.clone(),
            policy,
            base: OnceCell::new(),
            targets: Mutex::new(HashMap::new()),
        }
    }

    /// Uses this SDK config (region, credentials, endpoint) instead of one resolved from
    /// `[aws]` and the standard AWS chain.
    pub fn with_base(settings: &AwsSettings, policy: retry::Policy, config: SdkConfig) -> Aws {
        Aws {
            base: OnceCell::new_with(Some(config)),
            ..Aws::new(settings, policy)
        }
    }

    pub fn policy(&self) -> retry::Policy {
        self.policy
    }

    /// The SDK config of `[aws]`.
    pub async fn base(&self) -> &SdkConfig {
        self.base
            .get_or_init(|| ec2::sdk_config(&self.settings))
            .await
    }

    /// The clients of `target`: its region, and credentials from assuming its role with
    /// the base credentials. The SDK keeps the role's credentials and renews them before
    /// they expire.
    pub async fn clients(&self, target: &Target) -> anyhow::Result<Arc<Clients>> {
        let mut targets = self.targets.lock().await;
        if let Some(c) = targets.get(target) {
            return Ok(c.clone());
        }
        let config = self.config_for(target).await?;
        let clients = Arc::new(Clients::new(config, self.policy));
        targets.insert(target.clone(), clients.clone());
        Ok(clients)
    }

    async fn config_for(&self, target: &Target) -> anyhow::Result<SdkConfig> {
        let base = self.base().await;
        let mut config = base.to_builder();
        if let Some(region) = &target.region {
            config.set_region(Some(aws_config::Region::new(region.clone())));
        }
        if let Some(arn) = &target.role_arn {
            let mut role = AssumeRoleProvider::builder(arn)
                .session_name("pushwake")
                .configure(base);
            if let Some(region) = &target.region {
                role = role.region(aws_config::Region::new(region.clone()));
            }
            let provider = role.build().await;
            config.set_credentials_provider(Some(SharedCredentialsProvider::new(provider)));
        }
        let config = config.build();
        config
            .region()
            .with_context(|| format!("no AWS region for {target}: set [aws] region"))?;
        Ok(config)
    }
}

/// What an AWS SDK error says, for the errors of our own clients.
#[derive(Debug)]
pub struct Failure {
    /// The service's error code, e.g. `UnauthorizedOperation` or `PreconditionFailed`.
    pub code: Option<String>,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The service's own words, or else the error chain.
    pub message: String,
    /// A failure worth another attempt whatever its code: no answer in time, a dropped
    /// connection, an answer that could not be read, or a 5xx.
    pub transient: bool,
}

impl Failure {
    pub fn of<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E>) -> Failure {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let transient = match err {
            _ if status.is_some_and(|s| s >= 500) => true,
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
            _ => false,
        };
        Failure {
            code: err.code().map(str::to_owned),
            status,
            message: match err.message() {
                Some(m) => m.to_owned(),
                None => crate::error_chain(err),
            },
            transient,
        }
    }
}
