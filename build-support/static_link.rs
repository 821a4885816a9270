// Shared by runtime/build.rs and shim/build.rs through include!: link one binary static and
// position-dependent.
//
// rustc (without `--target`, where crt-static would also hit proc-macros) asks for
// `-Bdynamic -lgcc_s ... -lc`. With `-static` and a search directory whose `libc.so`,
// `libm.so` and `libgcc_s.so` are linker scripts naming the static archives, those requests
// resolve to libc.a, libm.a and libgcc_eh.a. Where the C toolchain has no libc.a, the binary
// stays dynamic (non-PIE) and the build says so.

/// Links binary `bin` of this package `-static -no-pie` (or only `-no-pie` without libc.a).
fn link_static(bin: &str) {
    use std::path::PathBuf;
    println!("cargo:rustc-link-arg-bin={bin}=-no-pie");
    let archives = ["libc.a", "libm.a", "libgcc_eh.a"].map(toolchain_file);
    let [Some(libc), Some(libm), Some(gcc_eh)] = archives else {
        println!(
            "cargo:warning=no static libc.a/libm.a/libgcc_eh.a from the C compiler: {bin} is linked dynamically (slower start)"
        );
        return;
    };
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("static-libs");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-libs");
    for (name, archive) in [
        ("libc.so", &libc),
        ("libm.so", &libm),
        ("libgcc_s.so", &gcc_eh),
    ] {
        let script = format!("GROUP({})\n", archive.display());
        std::fs::write(dir.join(name), script).expect("write a linker script");
    }
    println!("cargo:rustc-link-arg-bin={bin}=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bin={bin}=-static");
}

/// `cc -print-file-name=NAME`: the toolchain's path for NAME, or None when it has none (the
/// compiler then prints NAME back unchanged).
fn toolchain_file(name: &str) -> Option<std::path::PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = std::process::Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = std::path::PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (path.is_absolute() && path.is_file()).then_some(path)
}
