//! berth-proxy owns the userland side of published ports: one process, one io_uring loop,
//! every TCP and UDP mapping, added and removed at run time over a control socket, plus the
//! nftables rules that publish the same ports in berth's own table. It must never block the
//! loop (every socket is non-blocking, every buffer bounded), never let one mapping's failure
//! stop another, and never touch an nftables table that is not its own.

pub mod compat;
pub mod control;
pub mod engine;
pub mod nft;
pub mod pipes;
pub mod protocol;
pub mod reactor;
pub mod slab;
pub mod sys;
pub mod tcp;
pub mod udp;

pub use engine::{Config, Engine, EngineError};
pub use protocol::{Client, MappingSpec, MappingStatus, Proto, Request, Response};
