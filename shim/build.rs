//! Link berth-shim as a position-dependent executable. With PIE, the dynamic loader rewrites
//! every pointer in .data.rel.ro (vtables, string tables) at start, which makes ~260 kB of
//! those pages private to each shim; without it they stay clean pages of the file, shared by
//! all shims. The code is PIC either way; only the link changes. Measured by perf/shim.sh.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
