//! The calls that change instances: tag, stop, start, terminate. Each request is defined once, for
//! the real call and for the `DryRun` check of [`Ec2::permitted`], and split at EC2's
//! [`MAX_IDS`] per call; what EC2 answers is dropped, the next describe reads the outcome.

use aws_sdk_ec2::types::Tag;

use super::{Ec2, Error, MAX_IDS};

impl Ec2 {
    /// Sets `tags` on the instances, in one call (per [`MAX_IDS`]).
    pub async fn tag(&self, ids: &[String], tags: &[(&str, &str)]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        // Within EC2's limit per call: one call per batch that fits, more for one that does not.
        for chunk in ids.chunks(MAX_IDS) {
            self.create_tags(chunk, tags, false).await?;
        }
        Ok(())
    }

    /// Stops the instances, in one call (per [`MAX_IDS`]).
    pub async fn stop(&self, ids: &[String]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        // Within EC2's limit per call: one call per batch that fits, more for one that does not.
        for chunk in ids.chunks(MAX_IDS) {
            self.stop_instances(chunk, false).await?;
        }
        Ok(())
    }

    /// Starts the given instances in one call (per [`MAX_IDS`]). EC2 fails the whole call when one of them
    /// cannot be started; the caller decides how to carry on.
    pub async fn start(&self, ids: &[String]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        // Within EC2's limit per call: one call per batch that fits, more for one that does not.
        for chunk in ids.chunks(MAX_IDS) {
            self.start_instances(chunk, false).await?;
        }
        Ok(())
    }

    /// Terminates the instances, in one call (per [`MAX_IDS`]): what a launched machine gets
    /// when its repeat is done, never a stop that would leave it (and its volume) behind.
    /// EC2 treats a repeated termination as done, so a retry is harmless.
    pub async fn terminate(&self, ids: &[String]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        // Within EC2's limit per call: one call per batch that fits, more for one that does not.
        for chunk in ids.chunks(MAX_IDS) {
            self.terminate_instances(chunk, false).await?;
        }
        Ok(())
    }

    // Each request is defined once, for the real call and for the `DryRun` check of
    // `permitted`; `mutation!` adds the flag and sends it.

    pub(super) async fn create_tags(
        &self,
        ids: &[String],
        tags: &[(&str, &str)],
        dry: bool,
    ) -> Result<(), Error> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        mutation!(
            self,
            "CreateTags",
            dry,
            self.client
                .create_tags()
                .set_resources(Some(ids.to_vec()))
                .set_tags(Some(tags.clone()))
        )
    }

    pub(super) async fn stop_instances(&self, ids: &[String], dry: bool) -> Result<(), Error> {
        mutation!(
            self,
            "StopInstances",
            dry,
            self.client
                .stop_instances()
                .set_instance_ids(Some(ids.to_vec()))
        )
    }

    pub(super) async fn start_instances(&self, ids: &[String], dry: bool) -> Result<(), Error> {
        mutation!(
            self,
            "StartInstances",
            dry,
            self.client
                .start_instances()
                .set_instance_ids(Some(ids.to_vec()))
        )
    }

    pub(super) async fn terminate_instances(&self, ids: &[String], dry: bool) -> Result<(), Error> {
        mutation!(
            self,
            "TerminateInstances",
            dry,
            self.client
                .terminate_instances()
                .set_instance_ids(Some(ids.to_vec()))
        )
    }
}
