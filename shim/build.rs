//! Link berth-shim static and position-dependent (see build-support/static_link.rs). With
//! PIE, the dynamic loader rewrites every pointer in .data.rel.ro (vtables, string tables) at
//! start, which makes ~260 kB of those pages private to each shim; position-dependent, they
//! stay clean pages of the file, shared by all shims. Static, a shim's start (one per
//! container, off the start's path but on a 2-core machine beside the client) also skips the
//! dynamic loader. The code is PIC either way; only the link changes.
include!("../build-support/static_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build-support/static_link.rs");
    link_static("berth-shim");
}
