//! What EC2 itself says about what machines cost: the Spot price in effect for a type in a
//! zone (`DescribeSpotPriceHistory`), and the volumes attached to instances
//! (`DescribeVolumes`), whose storage is paid for while the machines are stopped.

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::InstanceType;

use super::{Ec2, Error, Kind, MAX_FILTER_VALUES, filter};

/// The product description of Linux Spot prices.
const LINUX: &str = "Linux/UNIX";

/// One EBS volume, as `DescribeVolumes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    /// The instance it is attached to (the first, for a Multi-Attach volume).
    pub instance: Option<String>,
    pub size_gib: u32,
    /// Its volume type: `gp3`, `gp2`, `io2`, `st1` …
    pub kind: String,
}

impl Ec2 {
    /// The Spot price of a Linux `instance_type` in `zone` now, in USD an hour: the newest
    /// price EC2 answers from `StartTime` now, which is the price in effect then (EC2 adds
    /// the last change before the start time). `None` when EC2 has no price for it (the
    /// type is not offered on Spot there).
    pub async fn spot_price(&self, instance_type: &str, zone: &str) -> Result<Option<f64>, Error> {
        const ACTION: &str = "DescribeSpotPriceHistory";
        let now = DateTime::from_secs(self.now().timestamp());
        let mut newest: Option<(DateTime, f64)> = None;
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .call(ACTION, || {
                    self.client
                        .describe_spot_price_history()
                        .instance_types(InstanceType::from(instance_type))
                        .product_descriptions(LINUX)
                        .availability_zone(zone)
                        .start_time(now)
                        .max_results(1000)
                        .set_next_token(next_token.clone())
                        .send()
                })
                .await?;
            for p in page.spot_price_history() {
                // The request asked for exactly these; an answer beside them is not this price.
                let matches = p.availability_zone() == Some(zone)
                    && p.instance_type().map(|t| t.as_str()) == Some(instance_type)
                    && p.product_description().map(|d| d.as_str()) == Some(LINUX);
                let (Some(text), Some(at)) = (p.spot_price(), p.timestamp()) else {
                    continue;
                };
                if !matches {
                    continue;
                }
                let price = match text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => v,
                    _ => {
                        return Err(Error {
                            kind: Kind::Other,
                            action: ACTION,
                            code: None,
                            message: format!(
                                "the Spot price of {instance_type} in {zone} is not a price: \
                                 {text:?}"
                            ),
                        });
                    }
                };
                if newest.as_ref().is_none_or(|(t, _)| at > t) {
                    newest = Some((*at, price));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => return Ok(newest.map(|(_, price)| price)),
            }
        }
    }

    /// The volumes attached to any of `instances`, each once. Asked with an
    /// `attachment.instance-id` filter, split at EC2's filter value limit, every page read.
    pub async fn volumes(&self, instances: &[String]) -> Result<Vec<Volume>, Error> {
        let mut out: Vec<Volume> = Vec::new();
        for chunk in instances.chunks(MAX_FILTER_VALUES) {
            let filters = vec![filter("attachment.instance-id", chunk.to_vec())];
            let mut next_token: Option<String> = None;
            loop {
                let page = self
                    .call("DescribeVolumes", || {
                        self.client
                            .describe_volumes()
                            .set_filters(Some(filters.clone()))
                            .max_results(500)
                            .set_next_token(next_token.clone())
                            .send()
                    })
                    .await?;
                for v in page.volumes() {
                    let Some(id) = v.volume_id() else { continue };
                    // A Multi-Attach volume may be attached to instances of two chunks.
                    if out.iter().any(|o| o.id == id) {
                        continue;
                    }
                    out.push(Volume {
                        id: id.to_owned(),
                        instance: v
                            .attachments()
                            .iter()
                            .find_map(|a| a.instance_id())
                            .map(str::to_owned),
                        size_gib: v.size().map_or(0, |s| s.max(0) as u32),
                        kind: v
                            .volume_type()
                            .map_or_else(String::new, |t| t.as_str().to_owned()),
                    });
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}
