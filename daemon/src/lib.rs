//! berthd: the Docker Engine API on a unix socket. It owns the metadata of images, containers
//! and volumes under `--data-root`, and asks one berth-shim per container to run it. It must
//! never be what keeps a container alive: every container is parented by its shim, and a new
//! berthd finds running containers again through their shims' sockets.

#![recursion_limit = "256"]

pub mod api;
pub mod attach;
pub mod config;
pub mod container;
pub mod daemon;
pub mod events;
pub mod exec;
pub mod http;
pub mod image;
pub mod image_api;
pub mod log;
pub mod logs;
pub mod netns;
pub mod server;
pub mod util;
pub mod volume;
