//! The test proxy's price side: Spot price history as EC2 answers it. moto answers
//! `DescribeSpotPriceHistory` with one constant price from 2006 whatever is asked; EC2
//! answers each type's price per zone and product, as it changed over time, and from a
//! `StartTime` on it gives the prices since then and the one in effect at that time. Also
//! instances with a volume, which moto lists only for a block device mapping.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, Request, ResponseTemplate};

use super::{Ec2, MotoProxy, form_decode};

/// One price change of the fake history.
#[derive(Clone, Debug)]
struct Change {
    instance_type: String,
    zone: String,
    product: String,
    price: f64,
    at: DateTime<Utc>,
}

impl MotoProxy {
    /// Makes EC2 answer `DescribeSpotPriceHistory` with these Linux/UNIX prices, each a
    /// (type, zone, USD an hour); a pair given again is a later change of its price (the
    /// list runs oldest to newest, ten minutes apart, the last ten minutes ago). Beside
    /// each, a Windows price that changed later still, at twice the price: a request that
    /// does not ask for Linux/UNIX gets it.
    pub async fn spot_prices(&self, prices: &[(&str, &str, f64)]) {
        let now = Utc::now();
        let n = prices.len() as i64;
        let mut history: Vec<Change> = Vec::new();
        for (i, (instance_type, zone, price)) in prices.iter().enumerate() {
            let at = now - Duration::minutes(10 * (n - i as i64));
            history.push(Change {
                instance_type: (*instance_type).to_owned(),
                zone: (*zone).to_owned(),
                product: "Linux/UNIX".to_owned(),
                price: *price,
                at,
            });
        }
        for (instance_type, zone, price) in prices {
            history.push(Change {
                instance_type: (*instance_type).to_owned(),
                zone: (*zone).to_owned(),
                product: "Windows".to_owned(),
                price: price * 2.0,
                at: now - Duration::minutes(1),
            });
        }
        history.sort_by_key(|c| c.at);
        Mock::given(method("POST"))
            .and(body_string_contains("Action=DescribeSpotPriceHistory"))
            .respond_with(SpotHistory {
                history: Arc::new(history),
            })
            .with_priority(2)
            .mount(&self.server)
            .await;
    }
}

struct SpotHistory {
    history: Arc<Vec<Change>>,
}

fn ec2_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_string(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}\
         </Code><Message>{message}</Message></Error></Errors><RequestID>r</RequestID></Response>"
    ))
}

impl wiremock::Respond for SpotHistory {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let params: Vec<(String, String)> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), form_decode(v)))
            .collect();
        let all = |prefix: &str| -> Vec<String> {
            params
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix(prefix)
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .map(|(_, v)| v.clone())
                .collect()
        };
        let one = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        if one("DryRun").as_deref() == Some("true") {
            return ec2_error(
                412,
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
            );
        }
        // A time EC2 cannot read is refused, naming the parameter.
        let time = |key: &str| -> Result<Option<DateTime<Utc>>, String> {
            match one(key) {
                None => Ok(None),
                Some(t) => DateTime::parse_from_rfc3339(&t)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|_| format!("Invalid {key}: {t}")),
            }
        };
        let (start, end) = match (time("StartTime"), time("EndTime")) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(m), _) | (_, Err(m)) => return ec2_error(400, "InvalidParameterValue", &m),
        };
        if let Some(n) = one("MaxResults")
            && !n.parse::<u32>().is_ok_and(|n| n <= 1000)
        {
            return ec2_error(400, "InvalidParameterValue", "MaxResults must be 0 to 1000");
        }
        let types = all("InstanceType.");
        let products = all("ProductDescription.");
        let zone = one("AvailabilityZone");
        let asked = |c: &Change| {
            (types.is_empty() || types.contains(&c.instance_type))
                && (products.is_empty() || products.contains(&c.product))
                && zone.as_ref().is_none_or(|z| *z == c.zone)
                && end.is_none_or(|e| c.at <= e)
        };
        // From a start time on: the changes since, and the one in effect at the start.
        let answered: Vec<&Change> = self
            .history
            .iter()
            .filter(|c| asked(c))
            .filter(|c| {
                let Some(start) = start else { return true };
                c.at >= start
                    || !self.history.iter().any(|later| {
                        asked(later)
                            && later.instance_type == c.instance_type
                            && later.zone == c.zone
                            && later.product == c.product
                            && later.at > c.at
                            && later.at <= start
                    })
            })
            .collect();
        // Oldest first: a client must pick the newest itself.
        let items: String = answered
            .iter()
            .map(|c| {
                format!(
                    "<item><instanceType>{}</instanceType><productDescription>{}\
                     </productDescription><spotPrice>{:.6}</spotPrice><timestamp>{}</timestamp>\
                     <availabilityZone>{}</availabilityZone></item>",
                    c.instance_type,
                    c.product,
                    c.price,
                    c.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    c.zone
                )
            })
            .collect();
        ResponseTemplate::new(200).set_body_raw(
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeSpotPriceHistoryResponse \
                 xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId>\
                 <spotPriceHistorySet>{items}</spotPriceHistorySet><nextToken/>\
                 </DescribeSpotPriceHistoryResponse>"
            ),
            "text/xml",
        )
    }
}

impl Ec2 {
    /// Launches one running instance with a root volume of `size_gib` and type `kind`
    /// (moto lists a volume only for a block device mapping).
    pub async fn running_with_volume(&self, size_gib: i32, kind: &str) -> String {
        let ebs = aws_sdk_ec2::types::EbsBlockDevice::builder()
            .volume_size(size_gib)
            .volume_type(aws_sdk_ec2::types::VolumeType::from(kind))
            .build();
        let mapping = aws_sdk_ec2::types::BlockDeviceMapping::builder()
            .device_name("/dev/sda1")
            .ebs(ebs)
            .build();
        let out = self
            .client
            .run_instances()
            .image_id("ami-12345678")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .block_device_mappings(mapping)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("run instances");
        out.instances()[0].instance_id().unwrap().to_owned()
    }
}

impl super::World {
    /// A world whose watch lists `n` stopped instances, each with a root volume of
    /// `size_gib` GiB of type `kind`.
    pub async fn stopped_with_volumes(n: usize, size_gib: i32, kind: &str, extra: &str) -> Self {
        let moto = super::moto_url();
        let ec2 = Ec2::connect(&moto).await;
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(ec2.running_with_volume(size_gib, kind).await);
        }
        ec2.stop(&ids).await;
        let proxy = super::MotoProxy::start(&moto).await;
        super::World {
            base: super::Base::new(proxy.url(), ids, extra).await,
            ec2,
            proxy,
        }
    }
}
