//! Link berth-runtime as a position-dependent executable. With PIE, the dynamic loader
//! rewrites every pointer in .data.rel.ro (vtables, string tables) at start: page faults and
//! copies on every one of the runtime's many short-lived invocations. The code is PIC either
//! way; only the link of the binary changes (the library the shim embeds is untouched).
//! Measured with `perf stat -e page-faults berth-runtime --version` and perf/runtime.sh.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
