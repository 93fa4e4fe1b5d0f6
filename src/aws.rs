//! The AWS clients, built on first use and kept: one SDK config from `[aws]` and the
//! standard chain, and per [`Target`] (a watch's region and role) an EC2 client and a
//! CloudWatch client. A pass with no change builds none of them, so it needs no AWS
//! credentials, region lookup or instance-metadata probe.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::sync::{Mutex, OnceCell};

use crate::cloudwatch::CloudWatch;
use crate::config::{AwsSettings, Target};
use crate::ec2::Ec2;
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
    pricing: OnceCell<crate::pricing::Pricing>,
}

impl Aws {
    pub fn new(settings: &AwsSettings, policy: retry::Policy) -> Aws {
        Aws {
            settings: settings.clone(),
            policy,
            base: OnceCell::new(),
            targets: Mutex::new(HashMap::new()),
            pricing: OnceCell::new(),
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

    /// The AWS Price List client, with `[aws]`'s credentials (prices are the same for
    /// every account).
    pub async fn pricing(&self) -> &crate::pricing::Pricing {
        let base = self.base().await;
        self.pricing
            .get_or_init(|| async { crate::pricing::Pricing::from_sdk_config(base, self.policy) })
            .await
    }

    /// The SDK config of `[aws]`.
    pub async fn base(&self) -> &SdkConfig {
        self.base.get_or_init(|| sdk_config(&self.settings)).await
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

/// Resolves region and credentials through the standard AWS chain, as the AWS CLI does.
/// Credentials are looked up lazily, on the first call that needs them.
async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The SDK config of the standard AWS chain alone, with no config file: for `pushwake
/// report` on a training machine. Credentials come from the chain (an instance role there),
/// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_EC2` apply as the SDK reads them, and the region
/// is the one given: the caller knows where the machine runs.
pub async fn standard_config(region: String) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .load()
        .await
}
