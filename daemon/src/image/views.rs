//! What the API shows of images: `docker images` rows, `docker image inspect`,
//! `docker history`, and the image part of `docker system df`.

use std::collections::BTreeMap;

use super::config::{
    DiskUsage, GraphDriver, HistoryItem, ImageInspect, ImageSummary, InspectMetadata, InspectRootFs,
};
use super::error::Result;
use super::store::{unix, Image, ImageStore, State, ZERO_TIME};

impl ImageStore {
    /// `GET /images/json` rows, newest first (`Containers` is -1: the caller knows them).
    pub fn list(&self) -> Vec<ImageSummary> {
        let st = self.lock();
        let mut out: Vec<ImageSummary> = st
            .images
            .values()
            .map(|i| Self::summary(&st, i, -1))
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        out
    }

    fn summary(st: &State, i: &Image, shared: i64) -> ImageSummary {
        ImageSummary {
            id: i.id.to_string(),
            parent_id: String::new(),
            repo_tags: Self::repo_tags(st, &i.id),
            repo_digests: Self::repo_digests(st, &i.id),
            created: unix(i.created()),
            size: i.size() as i64,
            shared_size: shared,
            labels: i
                .config
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default(),
            containers: -1,
        }
    }

    /// `GET /system/df`: every image with its shared size, and all layers counted once.
    pub fn disk_usage(&self) -> DiskUsage {
        let st = self.lock();
        let mut uses: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for i in st.images.values() {
            for (c, s) in i.chain.iter().zip(&i.layer_sizes) {
                uses.entry(c).or_insert((0, *s)).0 += 1;
            }
        }
        let layers_size = uses.values().map(|(_, s)| s).sum();
        let mut images: Vec<ImageSummary> = st
            .images
            .values()
            .map(|i| {
                let shared: u64 = i
                    .chain
                    .iter()
                    .zip(&i.layer_sizes)
                    .filter(|(c, _)| uses[c.as_str()].0 > 1)
                    .map(|(_, s)| s)
                    .sum();
                Self::summary(&st, i, shared as i64)
            })
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        DiskUsage {
            layers_size,
            images,
        }
    }

    /// `GET /images/{name}/json`.
    pub fn inspect(&self, name: &str) -> Result<ImageInspect> {
        let st = self.lock();
        let i = Self::resolve_in(&st, name)?;
        let c = &i.config;
        let lowers: Vec<String> = i
            .chain
            .iter()
            .rev()
            .map(|ch| self.layer_dir(ch).join("diff").display().to_string())
            .collect();
        Ok(ImageInspect {
            id: i.id.to_string(),
            repo_tags: Self::repo_tags(&st, &i.id),
            repo_digests: Self::repo_digests(&st, &i.id),
            parent: String::new(),
            comment: c.comment.clone().unwrap_or_default(),
            created: i.created().to_string(),
            docker_version: c.docker_version.clone().unwrap_or_default(),
            author: c.author.clone().unwrap_or_default(),
            config: c.config.clone().unwrap_or_default(),
            architecture: c.architecture.clone(),
            variant: c.variant.clone(),
            os: c.os.clone(),
            size: i.size() as i64,
            graph_driver: GraphDriver {
                name: "overlay2".into(),
                data: BTreeMap::from([("LowerDir".to_string(), lowers.join(":"))]),
            },
            root_fs: InspectRootFs {
                kind: "layers".into(),
                layers: c.rootfs.diff_ids.clone(),
            },
            metadata: InspectMetadata {
                last_tag_time: i
                    .record
                    .last_tag_time
                    .clone()
                    .unwrap_or_else(|| ZERO_TIME.into()),
            },
        })
    }

    /// `GET /images/{name}/history`, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        let st = self.lock();
        let i = Self::resolve_in(&st, name)?;
        let mut out = Vec::new();
        let mut layer = 0;
        if i.config.history.is_empty() {
            // Configs without history (some OCI tools write none): one row per layer.
            for s in &i.layer_sizes {
                out.push(HistoryItem {
                    id: "<missing>".into(),
                    created: unix(i.created()),
                    created_by: String::new(),
                    tags: None,
                    size: *s as i64,
                    comment: String::new(),
                });
            }
        }
        for h in &i.config.history {
            let size = if h.empty_layer {
                0
            } else {
                layer += 1;
                i.layer_sizes.get(layer - 1).copied().unwrap_or(0)
            };
            out.push(HistoryItem {
                id: "<missing>".into(),
                created: h.created.as_deref().map_or(0, unix),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: None,
                size: size as i64,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        out.reverse();
        if let Some(top) = out.first_mut() {
            top.id = i.id.to_string();
            top.tags = Some(Self::repo_tags(&st, &i.id));
        }
        Ok(out)
    }
}
