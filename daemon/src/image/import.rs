//! `docker import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer
//! image, with a config made from the `--change` instructions and the commit message.

use std::io::Read;
use std::time::SystemTime;

use super::config::{History, ImageConfig, RootFs, RunConfig};
use super::digest::ImageId;
use super::error::Result;
use super::reference::Reference;
use super::store::ImageStore;

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl ImageStore {
    /// Imports the rootfs tarball `r` as a new image, tagged `repo_tag` (`repo[:tag]`) when
    /// given. `changes` are Dockerfile instructions (`CMD ["sh"]`, `ENV A=b`, …); `message`
    /// becomes the image's comment (Docker's default is `Imported from -`). The tag and the
    /// changes are checked before the tarball is read.
    pub fn import(
        &self,
        r: &mut dyn Read,
        repo_tag: Option<&str>,
        changes: &[String],
        message: &str,
    ) -> Result<ImageId> {
        let tag = repo_tag
            .filter(|t| !t.is_empty())
            .map(Reference::parse)
            .transpose()?;
        let mut run = RunConfig::default();
        super::changes::apply(&mut run, changes)?;
        let layer = self.add_layer(None, None, r, None)?;
        let created = crate::util::rfc3339(SystemTime::now());
        let message = if message.is_empty() {
            "Imported from -"
        } else {
            message
        };
        let config = ImageConfig {
            architecture: arch().into(),
            os: "linux".into(),
            created: Some(created.clone()),
            comment: Some(message.into()),
            config: Some(run),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            history: vec![History {
                created: Some(created),
                comment: Some(message.into()),
                ..History::default()
            }],
            ..ImageConfig::default()
        };
        let bytes = serde_json::to_vec(&config).expect("an image config serialises");
        let mut st = self.lock();
        let done = self.commit(&mut st, &bytes, tag.as_slice());
        drop(st);
        match done {
            Ok((id, _)) => Ok(id),
            Err(e) => {
                if layer.created {
                    self.discard_layers(&[layer.chain_id]);
                }
                Err(e)
            }
        }
    }
}
