//! Reading EC2's record of instances: `DescribeInstances` by id or by tag, every page,
//! each answer read into an [`Instance`]. Apart from the calls that change things, because
//! describing is what every pass does and may be repeated freely.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, InstanceLifecycleType};
use chrono::DateTime;

use super::{Ec2, Error, Instance, InstanceState, MAX_FILTER_VALUES, StateReason, filter};

impl Ec2 {
    /// Describes the given instances. Ids that do not exist are simply absent from the
    /// answer: they are asked for with an `instance-id` filter, which, unlike the
    /// `InstanceIds` parameter, does not fail the whole call for one unknown id.
    pub async fn describe(&self, ids: &[String]) -> Result<Vec<Instance>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_FILTER_VALUES) {
            out.extend(
                self.describe_where(vec![filter("instance-id", chunk.to_vec())])
                    .await?,
            );
        }
        Ok(out)
    }

    /// Describes every instance (not terminated) that carries all of `tags`.
    pub async fn describe_tagged(
        &self,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, Error> {
        let mut filters: Vec<Filter> = tags
            .iter()
            .map(|(k, v)| filter(&format!("tag:{k}"), vec![v.clone()]))
            .collect();
        filters.push(filter(
            "instance-state-name",
            ["pending", "running", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        ));
        self.describe_where(filters).await
    }

    /// Describes every instance (not terminated) whose tag `key` holds one of `values`.
    pub async fn describe_tag_in(
        &self,
        key: &str,
        values: &[String],
    ) -> Result<Vec<Instance>, Error> {
        let filters = vec![
            filter(&format!("tag:{key}"), values.to_vec()),
            filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped"]
                    .map(String::from)
                    .to_vec(),
            ),
        ];
        self.describe_where(filters).await
    }

    /// One `DescribeInstances` (and its further pages) with these filters.
    async fn describe_where(&self, filters: Vec<Filter>) -> Result<Vec<Instance>, Error> {
        let mut out = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .call("DescribeInstances", || {
                    self.client
                        .describe_instances()
                        .set_filters(Some(filters.clone()))
                        .max_results(1000)
                        .set_next_token(next_token.clone())
                        .send()
                })
                .await?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let (Some(id), Some(state)) = (
                    instance.instance_id(),
                    instance.state().and_then(|s| s.name()),
                ) else {
                    continue;
                };
                let tags = instance
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                    .collect();
                let launch_time = instance
                    .launch_time()
                    .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                let state_reason = instance.state_reason().and_then(|r| {
                    Some(StateReason {
                        code: r.code()?.to_owned(),
                        message: r.message().unwrap_or_default().to_owned(),
                    })
                });
                out.push(Instance {
                    id: id.to_owned(),
                    state: InstanceState::from(state),
                    tags,
                    launch_time,
                    state_reason,
                    instance_type: instance.instance_type().map(|t| t.as_str().to_owned()),
                    zone: instance
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .map(str::to_owned),
                    subnet: instance.subnet_id().map(str::to_owned),
                    spot: instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}
