//! Link the berth-runtime binary static and position-dependent. Every runtime command is a
//! short-lived process, so its start-up is paid per container: with PIE the dynamic loader
//! rewrites every pointer in .data.rel.ro (vtables, string tables), and a dynamic libc costs
//! the loader's own start, symbol lookups and the page faults of a second mapping. Static
//! non-PIE measured 0.2-0.3 ms less per `run` than dynamic non-PIE, 109 page faults for
//! `--version` against 141 (perf/runtime.sh, `perf stat -e page-faults`). Only the binary's
//! link changes: the library the shim embeds and every other binary stay as they are.
//!
//! rustc (without `--target`, where crt-static would also hit proc-macros) asks for
//! `-Bdynamic -lgcc_s ... -lc`. With `-static` and a search directory whose `libc.so`,
//! `libm.so` and `libgcc_s.so` are linker scripts naming the static archives, those requests
//! resolve to libc.a, libm.a and libgcc_eh.a. Where the C toolchain has no libc.a, the binary
//! stays dynamic (non-PIE) and the build says so.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let archives = ["libc.a", "libm.a", "libgcc_eh.a"].map(toolchain_file);
    let [Some(libc), Some(libm), Some(gcc_eh)] = archives else {
        println!(
            "cargo:warning=no static libc.a/libm.a/libgcc_eh.a from the C compiler: berth-runtime is linked dynamically (slower start)"
        );
        return;
    };
    let dir =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("static-libs");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-libs");
    for (name, archive) in [
        ("libc.so", &libc),
        ("libm.so", &libm),
        ("libgcc_s.so", &gcc_eh),
    ] {
        let script = format!("GROUP({})\n", archive.display());
        std::fs::write(dir.join(name), script).expect("write a linker script");
    }
    println!("cargo:rustc-link-arg-bin=berth-runtime=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bin=berth-runtime=-static");
}

/// `cc -print-file-name=NAME`: the toolchain's path for NAME, or None when it has none (the
/// compiler then prints NAME back unchanged).
fn toolchain_file(name: &str) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (path.is_absolute() && path.is_file()).then_some(path)
}
