//! The image config (OCI image spec / Docker image JSON) as the store reads it, and the shapes
//! the Engine API returns for images (moby's api/swagger.yaml: ImageSummary, ImageInspect,
//! HistoryResponseItem, ImageDeleteResponseItem).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An image config. Unknown fields are ignored here; the store keeps the exact bytes (their
/// sha256 is the image id).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The `config` section: what a container of the image inherits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// A row of `GET /images/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub size: i64,
    /// Bytes of this image's layers that other images share too (-1 when not computed).
    pub shared_size: i64,
    pub labels: BTreeMap<String, String>,
    /// Containers using the image (-1 when not computed).
    pub containers: i64,
}

/// `GET /images/{name}/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    /// RFC 3339.
    pub created: String,
    pub docker_version: String,
    pub author: String,
    pub config: RunConfig,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub size: i64,
    pub graph_driver: GraphDriver,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    pub metadata: InspectMetadata,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub name: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectMetadata {
    /// RFC 3339; Docker's zero time when never tagged.
    pub last_tag_time: String,
}

/// A row of `GET /images/{name}/history`, newest first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image id on the top row, `<missing>` below (as Docker shows loaded images).
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    pub tags: Option<Vec<String>>,
    pub size: i64,
    pub comment: String,
}

/// One line of `DELETE /images/{name}` and of prune's `ImagesDeleted`:
/// `{"Untagged": "busybox:latest"}` or `{"Deleted": "sha256:…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

/// `POST /images/prune`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    pub images_deleted: Vec<Removed>,
    pub space_reclaimed: u64,
}

/// What `docker load` made: one entry per image in the archive.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub images: Vec<LoadedImage>,
    /// Tags moved away from an image they named before (`docker load` reports them).
    pub moved: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: super::ImageId,
    /// Familiar form, `busybox:latest`.
    pub tags: Vec<String>,
}

impl Loaded {
    /// The lines `docker load` prints, in the order it prints them.
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .moved
            .iter()
            .map(|(tag, old)| {
                format!("The image {tag} already exists, renaming the old one with ID {old} to empty string")
            })
            .collect();
        for i in &self.images {
            if i.tags.is_empty() {
                out.push(format!("Loaded image ID: {}", i.id));
            }
            out.extend(i.tags.iter().map(|t| format!("Loaded image: {t}")));
        }
        out
    }
}

/// Who uses an image, as the container code tells the store (`rmi` and prune refuse or
/// adapt accordingly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    /// The container's id (Docker's messages show its first 12 characters).
    pub container: String,
    pub running: bool,
}

/// `GET /system/df`'s image part.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Bytes of all unpacked layers, each counted once.
    pub layers_size: u64,
    pub images: Vec<ImageSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_shapes_match_the_engine_api() {
        let v = serde_json::to_value([
            Removed::Untagged("a:b".into()),
            Removed::Deleted("sha256:x".into()),
        ])
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"Untagged": "a:b"}, {"Deleted": "sha256:x"}])
        );
        let c: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"ExposedPorts":{"80/tcp":{}}},
               "rootfs":{"type":"layers","diff_ids":["sha256:0"]},"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(c.config.unwrap().cmd.unwrap(), vec!["sh"]);
        let l = Loaded {
            images: vec![LoadedImage {
                id: super::super::ImageId::parse(&"a".repeat(64)).unwrap(),
                tags: vec![],
            }],
            moved: vec![],
        };
        assert_eq!(
            l.messages(),
            vec![format!("Loaded image ID: sha256:{}", "a".repeat(64))]
        );
    }
}
