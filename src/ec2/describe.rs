//! Reading EC2's record: instances (`DescribeInstances` by id or by tag, every page, each
//! answer read into an [`Instance`]), and what a launch needs to know beforehand, the
//! subnets' zones and the launch template's default version. Apart from the calls that
//! change things, because describing is what every pass does and may be repeated freely.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, InstanceLifecycleType};
use chrono::DateTime;

use super::{
    Ec2, Error, Instance, InstanceState, MAX_FILTER_VALUES, StateReason, filter, transition_time,
};

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

    /// Describes every instance whose tag `k` holds one of its values, for every pair
    /// `(k, values)`: launched machines by owner, commit and repeat, say. With `all_states`
    /// terminated and shutting-down instances too: EC2 shows a terminated instance for
    /// about an hour, with the state reason that tells an interruption from a finished
    /// job. A pair with no values matches nothing. Calls are split so that no call has more
    /// than EC2's [`MAX_FILTER_VALUES`]; each page of each is read.
    pub async fn describe_with_tags(
        &self,
        tags: &[(&str, Vec<String>)],
        all_states: bool,
    ) -> Result<Vec<Instance>, Error> {
        if tags.iter().any(|(_, values)| values.is_empty()) {
            return Ok(Vec::new());
        }
        let states: &[&str] = if all_states {
            &[]
        } else {
            &["pending", "running", "stopping", "stopped"]
        };
        let mut out: Vec<Instance> = Vec::new();
        for batch in batches(tags.to_vec(), MAX_FILTER_VALUES - states.len()) {
            let mut filters: Vec<Filter> = batch
                .into_iter()
                .map(|(k, values)| filter(&format!("tag:{k}"), values))
                .collect();
            if !states.is_empty() {
                let states = states.iter().map(|s| s.to_string()).collect();
                filters.push(filter("instance-state-name", states));
            }
            for i in self.describe_where(filters).await? {
                // Disjoint batches give each instance once; a value given twice would not.
                if !out.iter().any(|o| o.id == i.id) {
                    out.push(i);
                }
            }
        }
        Ok(out)
    }

    /// Each subnet's Availability Zone, as `(subnet id, zone)`. A subnet that does not exist
    /// is absent from the answer: they are asked for with a `subnet-id` filter, which,
    /// unlike `SubnetIds`, does not fail the whole call for one unknown id, so the caller
    /// can name the missing ones.
    pub async fn subnets(&self, ids: &[String]) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_FILTER_VALUES) {
            let filters = vec![filter("subnet-id", chunk.to_vec())];
            let mut next_token: Option<String> = None;
            loop {
                let page = self
                    .call("DescribeSubnets", || {
                        self.client
                            .describe_subnets()
                            .set_filters(Some(filters.clone()))
                            .max_results(1000)
                            .set_next_token(next_token.clone())
                            .send()
                    })
                    .await?;
                out.extend(page.subnets().iter().filter_map(|s| {
                    Some((s.subnet_id()?.to_owned(), s.availability_zone()?.to_owned()))
                }));
                match page.next_token() {
                    Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// The default version of a launch template, named by its id (`lt-…`) or else by its
    /// name: the version a fleet launches when none is configured, and proof that the
    /// template exists. A missing template is [`super::Kind::NotFound`].
    pub async fn launch_template(&self, id_or_name: &str) -> Result<String, Error> {
        const ACTION: &str = "DescribeLaunchTemplates";
        let by_id = is_template_id(id_or_name);
        let page = self
            .call(ACTION, || {
                let call = self.client.describe_launch_templates();
                if by_id {
                    call.launch_template_ids(id_or_name).send()
                } else {
                    call.launch_template_names(id_or_name).send()
                }
            })
            .await?;
        let version = page
            .launch_templates()
            .iter()
            .find(|t| {
                let named = if by_id {
                    t.launch_template_id()
                } else {
                    t.launch_template_name()
                };
                named == Some(id_or_name)
            })
            .and_then(|t| t.default_version_number());
        match version {
            Some(v) => Ok(v.to_string()),
            // EC2 answers an unknown name or id with an error; an empty answer means the same.
            None => Err(Error {
                kind: super::Kind::NotFound,
                action: ACTION,
                code: None,
                message: format!("no launch template {id_or_name}"),
            }),
        }
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
                    ended_at: instance.state_transition_reason().and_then(transition_time),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

/// Whether a launch template is named by its id (`lt-` and hex digits) rather than by its
/// name.
pub(super) fn is_template_id(id_or_name: &str) -> bool {
    id_or_name
        .strip_prefix("lt-")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Splits tag filters `(key, values)` into batches of at most `budget` values in all,
/// whose results together are the same instances: an instance has one value per key, so
/// splitting one key's values into disjoint parts splits the matches into disjoint parts.
/// The key with the most values is split first, only as far as needed.
fn batches(pairs: Vec<(&str, Vec<String>)>, budget: usize) -> Vec<Vec<(&str, Vec<String>)>> {
    let total: usize = pairs.iter().map(|(_, v)| v.len()).sum();
    let largest = pairs
        .iter()
        .enumerate()
        .max_by_key(|(_, (_, v))| v.len())
        .map(|(i, (_, v))| (i, v.len()));
    let (at, most) = match largest {
        Some((at, most)) if total > budget && most > 1 => (at, most),
        // It fits, or cannot be split further (EC2 will say so).
        _ => return vec![pairs],
    };
    let rest = total - most;
    let size = if rest < budget {
        budget - rest
    } else {
        most.div_ceil(2)
    };
    pairs[at]
        .1
        .chunks(size)
        .flat_map(|part| {
            let mut pairs = pairs.clone();
            pairs[at].1 = part.to_vec();
            batches(pairs, budget)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn sizes(batches: &[Vec<(&str, Vec<String>)>]) -> Vec<Vec<usize>> {
        batches
            .iter()
            .map(|b| b.iter().map(|(_, v)| v.len()).collect())
            .collect()
    }

    #[test]
    fn filters_that_fit_are_one_call() {
        let pairs = vec![("owner", values("o", 1)), ("commit", values("c", 195))];
        assert_eq!(sizes(&batches(pairs, 196)), [[1, 195]]);
        assert_eq!(sizes(&batches(Vec::new(), 196)), [Vec::<usize>::new()]);
    }

    #[test]
    fn the_longest_filter_is_split_only_as_far_as_needed() {
        let pairs = vec![("owner", values("o", 1)), ("commit", values("c", 450))];
        let got = batches(pairs, 196);
        assert_eq!(sizes(&got), [[1, 195], [1, 195], [1, 60]]);
        // Every value asked for once, the owner in every call.
        let commits: Vec<String> = got.iter().flat_map(|b| b[1].1.clone()).collect();
        assert_eq!(commits, values("c", 450));
        assert!(got.iter().all(|b| b[0] == ("owner", values("o", 1))));
    }

    #[test]
    fn two_long_filters_are_both_split_and_every_combination_asked() {
        let pairs = vec![("commit", values("c", 300)), ("repeat", values("r", 300))];
        let got = batches(pairs, 200);
        assert!(
            got.iter()
                .all(|b| b.iter().map(|(_, v)| v.len()).sum::<usize>() <= 200)
        );
        // Each (commit, repeat) pair is covered exactly once.
        let mut covered = 0;
        for b in &got {
            covered += b[0].1.len() * b[1].1.len();
        }
        assert_eq!(covered, 300 * 300);
    }

    #[test]
    fn template_ids_are_lt_and_hex_and_anything_else_is_a_name() {
        assert!(is_template_id("lt-0123456789abcdef0"));
        assert!(!is_template_id("lt-trainer"));
        assert!(!is_template_id("lt-"));
        assert!(!is_template_id("trainer"));
    }
}
