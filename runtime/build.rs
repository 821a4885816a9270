//! Link berth-runtime static and position-dependent (see build-support/static_link.rs). Every
//! runtime command is a short-lived process, so its start-up is paid per container: with PIE
//! the dynamic loader rewrites every pointer in .data.rel.ro (vtables, string tables), and a
//! dynamic libc costs the loader's own start, symbol lookups and the page faults of a second
//! mapping. Static non-PIE measured 0.2-0.3 ms less per `run` than dynamic non-PIE, 109 page
//! faults for `--version` against 141 (perf/runtime.sh, `perf stat -e page-faults`). Only the
//! binary's link changes: the library the shim embeds and every other binary stay as they are.
include!("../build-support/static_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build-support/static_link.rs");
    link_static("berth-runtime");
}
