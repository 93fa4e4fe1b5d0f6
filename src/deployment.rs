//! This deployment: who owns the machines it starts (their `pushwake:owner` tag), and
//! every place (region, account) it ever started machines in.
//!
//! The owner is `deployment = "NAME"` when set, else an id made once and kept in
//! `deployment.json` beside the state (in the state directory, or under the `state_url`
//! prefix), never in `state.json` itself: a new hostname, a recreated container, a moved
//! state directory or a corrupt state file leave it as it was. The same record lists the
//! older owners of this state whose machines are adopted (the `host:dir` owner of earlier
//! versions) and the places to look for orphans in, which must outlive the watches that
//! led there.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::Target;
use crate::s3::{self, Expect, S3};
use crate::tags::Owners;

/// The record's name, in the state directory or under the `state_url` prefix.
pub const FILE: &str = "deployment.json";

/// What `deployment.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Made once; the owner unless a name is configured.
    pub id: String,
    /// Older owners of this state: their machines are this deployment's.
    #[serde(default)]
    pub adopts: Vec<String>,
    /// Every place this deployment started machines in, the default one included.
    #[serde(default)]
    pub places: BTreeSet<Target>,
}

impl Record {
    /// A new record adopting the machines of `legacy`, the owner earlier versions tagged
    /// this state's machines with.
    pub fn fresh(legacy: String) -> Record {
        Record {
            id: format!("pushwake-{:016x}", fastrand::u64(..)),
            adopts: vec![legacy],
            places: BTreeSet::new(),
        }
    }

    /// Who this deployment is on EC2: `name` when configured (the id's machines then
    /// adopted), else the id.
    pub fn owners(&self, name: Option<&str>) -> Owners {
        let mut adopted = self.adopts.clone();
        let current = match name {
            Some(name) => {
                adopted.push(self.id.clone());
                name.to_owned()
            }
            None => self.id.clone(),
        };
        adopted.retain(|a| *a != current);
        Owners { current, adopted }
    }
}

/// Where the record is kept.
#[derive(Debug)]
pub enum Home {
    /// A file in the state directory.
    Dir(PathBuf),
    /// An object under the shared state's prefix.
    S3 { s3: S3, key: String },
}

/// The record as this process last read or wrote it, and its ETag in S3.
#[derive(Debug)]
struct Kept {
    record: Record,
    etag: Option<String>,
}

/// This deployment, as a pass uses it.
#[derive(Debug)]
pub struct Deployment {
    owners: Owners,
    home: Home,
    kept: Mutex<Kept>,
    /// A dry run writes nothing: a missing record is made in memory only.
    dry_run: bool,
}

impl Deployment {
    /// Reads the record at `home`, or makes it (adopting `legacy`) when there is none; in
    /// a `dry_run`, makes it in memory only. A record that cannot be parsed is an error, and
    /// is left as it is.
    pub async fn open(
        name: Option<&str>,
        home: Home,
        legacy: String,
        dry_run: bool,
    ) -> anyhow::Result<Self> {
        let kept = match read(&home).await? {
            Some(kept) => kept,
            None if dry_run => Kept {
                record: Record::fresh(legacy),
                etag: None,
            },
            None => {
                let record = Record::fresh(legacy);
                match write(&home, &record, &Expect::Absent).await {
                    Ok(etag) => Kept { record, etag },
                    // Another agent of the shared state made it first: theirs it is.
                    Err(e) if is_changed(&e) => read(&home)
                        .await?
                        .with_context(|| format!("{} vanished while it was made", place(&home)))?,
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Deployment {
            owners: kept.record.owners(name),
            home,
            kept: Mutex::new(kept),
            dry_run,
        })
    }

    /// Who this deployment is on EC2.
    pub fn owners(&self) -> &Owners {
        &self.owners
    }

    /// The owner its machines are tagged with.
    pub fn owner(&self) -> &str {
        &self.owners.current
    }

    /// Every place it started machines in, as far as this process knows.
    pub async fn places(&self) -> BTreeSet<Target> {
        self.kept.lock().await.record.places.clone()
    }

    /// Remembers `target` as a place this deployment starts machines in, before it does:
    /// written at once when it is new, so an orphan there is looked for even after the
    /// watch that led there is gone and the state is lost.
    pub async fn remember(&self, target: &Target) -> anyhow::Result<()> {
        let mut kept = self.kept.lock().await;
        if kept.record.places.contains(target) || self.dry_run {
            return Ok(());
        }
        let mut record = kept.record.clone();
        record.places.insert(target.clone());
        let expect = match &kept.etag {
            Some(etag) => Expect::Etag(etag.clone()),
            None => Expect::Absent,
        };
        let etag = match write(&self.home, &record, &expect).await {
            Ok(etag) => etag,
            // Another agent added a place meanwhile: add this one to what it wrote.
            Err(e) if is_changed(&e) => {
                let theirs = read(&self.home).await?.context("the record vanished")?;
                record = theirs.record;
                record.places.insert(target.clone());
                let expect = Expect::Etag(theirs.etag.unwrap_or_default());
                write(&self.home, &record, &expect).await?
            }
            Err(e) => return Err(e),
        };
        *kept = Kept { record, etag };
        Ok(())
    }
}

fn place(home: &Home) -> String {
    match home {
        Home::Dir(dir) => dir.join(FILE).display().to_string(),
        Home::S3 { key, .. } => format!("the deployment record {key}"),
    }
}

fn is_changed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<s3::Error>()
        .is_some_and(|e| e.kind == s3::Kind::Changed)
}

/// The record at `home`; `None` when there is none yet.
async fn read(home: &Home) -> anyhow::Result<Option<Kept>> {
    let (bytes, etag) = match home {
        Home::Dir(dir) => match std::fs::read(dir.join(FILE)) {
            Ok(bytes) => (bytes, None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", place(home))),
        },
        Home::S3 { s3, key } => match s3.get(key).await? {
            Some(o) => (o.bytes, Some(o.version.etag)),
            None => return Ok(None),
        },
    };
    let record = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is corrupt; it was left as it is: it names the owner of this deployment's \
             machines, so repair it rather than delete it",
            place(home)
        )
    })?;
    Ok(Some(Kept { record, etag }))
}

/// Writes `record` at `home` (atomically, or conditionally on `expect` in S3); returns the
/// new ETag in S3.
async fn write(home: &Home, record: &Record, expect: &Expect) -> anyhow::Result<Option<String>> {
    let mut bytes = serde_json::to_vec_pretty(record).expect("the record serializes");
    bytes.push(b'\n');
    match home {
        Home::Dir(dir) => {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                let mut tmp = tempfile::Builder::new()
                    .prefix(".deployment.")
                    .tempfile_in(dir)?;
                tmp.write_all(&bytes)?;
                tmp.as_file().sync_all()?;
                tmp.persist(dir.join(FILE)).map_err(|e| e.error)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().with_context(|| format!("cannot write {}", place(home)))?;
            Ok(None)
        }
        Home::S3 { s3, key } => Ok(Some(s3.put(key, &bytes, expect).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_owner_until_a_name_is_set_and_then_adopted() {
        let record = Record::fresh("master:/var/lib/pushwake".into());
        let owners = record.owners(None);
        assert_eq!(owners.current, record.id);
        assert_eq!(owners.adopted, ["master:/var/lib/pushwake"]);
        let named = record.owners(Some("team-a"));
        assert_eq!(named.current, "team-a");
        assert!(named.is(&record.id) && named.is("master:/var/lib/pushwake"));
    }

    #[tokio::test]
    async fn the_record_survives_a_new_process_and_remembers_places() {
        let dir = tempfile::tempdir().unwrap();
        let home = || Home::Dir(dir.path().to_owned());
        let first = Deployment::open(None, home(), "a:/x".into(), false)
            .await
            .unwrap();
        let target = Target {
            region: Some("eu-west-1".into()),
            role_arn: None,
        };
        first.remember(&target).await.unwrap();
        // A new host, the same state directory: the same owner, the same places.
        let again = Deployment::open(None, home(), "b:/x".into(), false)
            .await
            .unwrap();
        assert_eq!(again.owners(), first.owners());
        assert!(again.owners().is("a:/x") && !again.owners().is("b:/x"));
        assert_eq!(again.places().await, BTreeSet::from([target]));
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let home = Home::Dir(dir.path().to_owned());
        let err = Deployment::open(None, home, "a:/x".into(), false)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
        assert_eq!(std::fs::read(dir.path().join(FILE)).unwrap(), b"{not json");
    }
}
