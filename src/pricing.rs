//! The AWS Price List Query API: what an instance type costs an hour on demand, in a
//! region, from `GetProducts` (service code `AmazonEC2`).
//!
//! A thin client: one question, its errors sorted by what to do about them, every call
//! through [`crate::retry::Policy`]. The API answers only in us-east-1, eu-central-1 and
//! ap-south-1, whatever region the prices are for; this client asks us-east-1 unless an
//! endpoint is set (`[aws] endpoint_url`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_PRICING`).

use std::fmt;
use std::time::Duration;

use aws_sdk_pricing::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_pricing::types::{Filter, FilterType};

use crate::retry::{self, Retryable};

mod document;

pub use document::{GB_MONTHS, Malformed, hourly_usd, usd_per};

/// The region the client asks when no endpoint is set.
const HOME: &str = "us-east-1";

/// Products per page: the API's maximum.
const PAGE: i32 = 100;

/// More pages than any one instance type has: past it, the API is answering in circles.
const MAX_PAGES: usize = 20;

/// What kind of failure a Pricing call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Throttling, a service fault, a dropped connection, no answer in time: worth retrying.
    Transient,
    /// `AccessDeniedException`: the credentials may not call `pricing:GetProducts`.
    Unauthorized,
    /// A malformed request or answer, no credentials: nothing a retry fixes.
    Other,
}

/// A Pricing call that failed.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "GetProducts failed: {code}: {}", self.message)?,
            None => write!(f, "GetProducts failed: {}", self.message)?,
        }
        if self.kind == Kind::Unauthorized {
            f.write_str(
                " (pricing:GetProducts is not allowed for these AWS credentials; grant it in \
                 their IAM policy)",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl Retryable for Error {
    fn retry(&self) -> retry::Retry {
        match self.kind {
            Kind::Transient => retry::Retry::Backoff,
            _ => retry::Retry::Never,
        }
    }

    fn timed_out(after: Duration) -> Self {
        Error {
            kind: Kind::Transient,
            code: None,
            message: format!("no answer within {after:?}"),
        }
    }
}

/// A client of the Price List Query API.
#[derive(Debug, Clone)]
pub struct Pricing {
    client: aws_sdk_pricing::Client,
    policy: retry::Policy,
}

impl Pricing {
    /// A client with the credentials of an SDK config made elsewhere, asking us-east-1
    /// unless the config's endpoint is overridden (then its region signs, as for EC2). The
    /// SDK's retries are turned off: retries are ours ([`crate::retry`]).
    pub fn from_sdk_config(config: &aws_config::SdkConfig, policy: retry::Policy) -> Pricing {
        let mut builder = aws_sdk_pricing::config::Builder::from(config)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(crate::http::connect_timeout(policy.timeout))
                    .operation_attempt_timeout(policy.timeout)
                    .build(),
            );
        if !endpoint_overridden(config) {
            builder = builder.region(aws_config::Region::from_static(HOME));
        }
        Pricing {
            client: aws_sdk_pricing::Client::from_conf(builder.build()),
            policy,
        }
    }

    /// USD an hour on demand, Linux, shared tenancy, no pre-installed software, used
    /// capacity; `None` when the price list has no such product (or prices it in another
    /// currency only). `region` is the code of the region the machine runs in.
    pub async fn on_demand(&self, instance_type: &str, region: &str) -> Result<Option<f64>, Error> {
        let filters = filters(&instance_fields(instance_type, region));
        let what = format!("the price of {instance_type} in {region}");
        self.price(filters, &what, hourly_usd).await
    }

    /// USD a GiB-month of an EBS volume type (`gp3`, `io2` …) in `region`: its storage only,
    /// not the IOPS or throughput provisioned beyond the baseline; `None` when the price
    /// list has no such product.
    pub async fn storage(&self, volume_type: &str, region: &str) -> Result<Option<f64>, Error> {
        let filters = filters(&[
            ("productFamily", "Storage"),
            ("volumeApiName", volume_type),
            ("regionCode", region),
        ]);
        let what = format!("the price of {volume_type} storage in {region}");
        self.price(filters, &what, |docs| usd_per(docs, GB_MONTHS))
            .await
    }

    /// Every product document the filters match, every page read, then priced by `read`.
    async fn price(
        &self,
        filters: Vec<Filter>,
        what: &str,
        read: impl Fn(&[String]) -> Result<Option<f64>, Malformed>,
    ) -> Result<Option<f64>, Error> {
        let mut documents: Vec<String> = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .policy
                .run("GetProducts", || async {
                    self.client
                        .get_products()
                        .service_code("AmazonEC2")
                        .set_filters(Some(filters.clone()))
                        .format_version("aws_v1")
                        .max_results(PAGE)
                        .set_next_token(next_token.clone())
                        .send()
                        .await
                        .map_err(classify)
                })
                .await?;
            documents.extend(page.price_list().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => {
                    return read(&documents).map_err(|e| Error {
                        kind: Kind::Other,
                        code: None,
                        message: format!("{what}: {e}"),
                    });
                }
            }
        }
        Err(Error {
            kind: Kind::Other,
            code: None,
            message: format!("{what}: more than {MAX_PAGES} pages of products"),
        })
    }
}

/// The fields of the one on-demand Linux product an instance type is.
fn instance_fields<'a>(instance_type: &'a str, region: &'a str) -> [(&'static str, &'a str); 6] {
    [
        ("instanceType", instance_type),
        ("regionCode", region),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
    ]
}

/// `TERM_MATCH` filters of the one product sought: every field equal to its value.
fn filters(fields: &[(&str, &str)]) -> Vec<Filter> {
    fields
        .iter()
        .map(|(field, value)| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(*field)
                .value(*value)
                .build()
                .expect("type, field and value are all set")
        })
        .collect()
}

/// Whether an endpoint is set for Pricing, as the SDK itself decides it: `[aws]
/// endpoint_url` or `AWS_ENDPOINT_URL` in the config, or the service's own setting
/// (`AWS_ENDPOINT_URL_PRICING`, a profile's `services` section).
fn endpoint_overridden(config: &aws_config::SdkConfig) -> bool {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("Pricing")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("all fields set");
    // An endpoint given in code (`[aws] endpoint_url`) wins over every setting, as in the SDK.
    if config.get_origin("endpoint_url").is_client_config() {
        return config.endpoint_url().is_some();
    }
    config.endpoint_url().is_some()
        || config
            .service_config()
            .is_some_and(|c| c.load_config(key).is_some())
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(err: SdkError<E>) -> Error {
    let f = crate::sdk::Failure::of(&err);
    let kind = match f.code.as_deref().map(kind_of) {
        Some(Kind::Other) | None if f.transient => Kind::Transient,
        Some(kind) => kind,
        None => Kind::Other,
    };
    Error {
        kind,
        code: f.code,
        message: f.message,
    }
}

/// What to do about a Pricing error code.
fn kind_of(code: &str) -> Kind {
    match code {
        "ThrottlingException"
        | "Throttling"
        | "InternalErrorException"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => Kind::Transient,
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => Kind::Unauthorized,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_asked(endpoint: Option<&str>) -> String {
        let mut config = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            config = config.endpoint_url(url);
        }
        let pricing = Pricing::from_sdk_config(&config.build(), retry::Policy::default());
        pricing.client.config().region().unwrap().to_string()
    }

    #[test]
    fn the_api_is_asked_in_us_east_1_unless_an_endpoint_is_set() {
        assert_eq!(region_asked(None), "us-east-1");
        // An emulator or gateway is asked in the config's region, as EC2 is.
        assert_eq!(region_asked(Some("http://127.0.0.1:5000")), "eu-west-1");
    }

    #[test]
    fn errors_are_sorted_by_what_to_do() {
        assert_eq!(kind_of("ThrottlingException"), Kind::Transient);
        assert_eq!(kind_of("InternalErrorException"), Kind::Transient);
        assert_eq!(kind_of("AccessDeniedException"), Kind::Unauthorized);
        assert_eq!(kind_of("InvalidParameterException"), Kind::Other);
        assert_eq!(kind_of("NotFoundException"), Kind::Other);
    }

    #[test]
    fn only_a_missing_permission_gets_the_iam_hint() {
        let error = |kind, code: &str| Error {
            kind,
            code: Some(code.to_owned()),
            message: "the service's own words".to_owned(),
        };
        let denied = error(Kind::Unauthorized, "AccessDeniedException").to_string();
        assert!(
            denied
                .starts_with("GetProducts failed: AccessDeniedException: the service's own words")
                && denied.contains("pricing:GetProducts is not allowed"),
            "{denied}"
        );
        let invalid = error(Kind::Other, "InvalidParameterException").to_string();
        assert!(!invalid.contains("IAM"), "{invalid}");
    }

    #[test]
    fn the_filters_name_one_linux_on_demand_product() {
        let got: Vec<(String, String, String)> =
            filters(&instance_fields("g5.xlarge", "eu-west-1"))
                .iter()
                .map(|f| {
                    (
                        f.r#type().as_str().to_owned(),
                        f.field().to_owned(),
                        f.value().to_owned(),
                    )
                })
                .collect();
        assert!(got.iter().all(|(t, _, _)| t == "TERM_MATCH"));
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|(_, f, v)| (f.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("instanceType", "g5.xlarge"),
                ("regionCode", "eu-west-1"),
                ("operatingSystem", "Linux"),
                ("tenancy", "Shared"),
                ("preInstalledSw", "NA"),
                ("capacitystatus", "Used"),
            ]
        );
    }
}
