//! The image store of berthd: content-addressed image configs, layers unpacked once per
//! chain id and shared by every image and container that uses them, and repository tags.
//! It loads `docker save` and OCI archives, imports rootfs tarballs, saves images back, and
//! answers what the /images endpoints need. It never trusts an archive: digests are checked,
//! hostile layers refused before they touch the store, and every metadata change is atomic.
//!
//! The API is synchronous and thread-safe; the HTTP layer calls it from `spawn_blocking`.

mod atomic;
mod changes;
mod config;
mod digest;
mod error;
mod fsat;
mod import;
mod layer;
mod load;
pub mod reference;
mod remove;
mod save;
mod store;
mod views;

pub use config::{
    DiskUsage, GraphDriver, History, HistoryItem, ImageConfig, ImageInspect, ImageSummary,
    ImageUser, InspectMetadata, InspectRootFs, Loaded, LoadedImage, PruneReport, Removed, RootFs,
    RunConfig,
};
pub use digest::{sha256_hex, ImageId};
pub use error::Error;
pub use layer::{unpack, Unpacked};
pub use reference::Reference;
pub use store::ImageStore;
