//! The runtime library's hot in-process steps before clone: loading and validating config.json,
//! planning the mounts, and reading the host's cgroup layout. Each runs once per container, so
//! together they bound what berth-runtime can save over runc and crun before any syscall.
//!
//!   cargo bench -p berth-benches
//!   cargo bench -p berth-benches -- --warm-up-time 1 --measurement-time 2   # quick look

use std::hint::black_box;

use berth_benches::{busy_mountinfo, Bundles, HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP};
use berth_runtime::cgroups::{Cgroup, Host};
use berth_runtime::mounts::{self, CgroupMountCtx};
use criterion::{criterion_group, criterion_main, Criterion};
use oci_spec::runtime::Spec;

fn config(c: &mut Criterion) {
    let bundles = Bundles::create().expect("create benchmark bundles");
    let mut g = c.benchmark_group("config");
    for (name, dir) in [("default", &bundles.default), ("docker", &bundles.docker)] {
        // Fail here, not as a silently fast error path inside the measurement.
        berth_runtime::spec::load(dir).unwrap_or_else(|e| panic!("{name} bundle: {e}"));
        let json = std::fs::read_to_string(dir.join("config.json")).expect("read config.json");

        g.bench_function(format!("load+validate/{name}"), |b| {
            b.iter(|| berth_runtime::spec::load(black_box(dir)).expect("load"))
        });
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| serde_json::from_str::<Spec>(black_box(&json)).expect("parse"))
        });
    }
    g.finish();
}

fn mount_plan(c: &mut Criterion) {
    let bundles = Bundles::create().expect("create benchmark bundles");
    let host = Host::parse(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP);
    let cg = Cgroup::plan(&host, None, "bench", None);
    let ctx = CgroupMountCtx {
        host: &host,
        cgroup: &cg,
        new_cgroupns: true,
    };
    let mut g = c.benchmark_group("mounts");

    let opts: Vec<String> = [
        "nosuid",
        "noexec",
        "nodev",
        "mode=1777",
        "size=65536k",
        "rprivate",
    ]
    .map(String::from)
    .to_vec();
    g.bench_function("parse_options/6", |b| {
        b.iter(|| mounts::parse_options(black_box(&opts)))
    });

    for (name, dir) in [("default", &bundles.default), ("docker", &bundles.docker)] {
        let bundle = berth_runtime::spec::load(dir).expect("load bundle");
        let list = bundle.spec.mounts().clone().unwrap_or_default();
        if let Err(e) = mounts::plan(&list, &bundle.dir, &ctx) {
            panic!("{name} mount plan: {e}");
        }
        g.bench_function(format!("plan/{name}/{}", list.len()), |b| {
            b.iter(|| mounts::plan(black_box(&list), black_box(&bundle.dir), &ctx).expect("plan"))
        });
    }
    g.finish();
}

fn cgroup_layout(c: &mut Criterion) {
    let mut g = c.benchmark_group("cgroups");
    g.bench_function("host_parse/hybrid", |b| {
        b.iter(|| Host::parse(black_box(HYBRID_MOUNTINFO), black_box(HYBRID_SELF_CGROUP)))
    });
    // mountinfo grows by three lines per running Docker container, after the cgroup mounts
    // made at boot: parsing should not get slower with the number of containers.
    let busy = busy_mountinfo(100);
    g.bench_function("host_parse/hybrid+100-containers", |b| {
        b.iter(|| Host::parse(black_box(&busy), black_box(HYBRID_SELF_CGROUP)))
    });
    let host = Host::parse(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP);
    assert_eq!(host.v1.len(), 9, "fixture: nine v1 hierarchies");
    assert!(
        host.unified.is_some(),
        "fixture: cgroup2 at /sys/fs/cgroup/unified"
    );
    g.bench_function("cgroup_plan", |b| {
        b.iter(|| Cgroup::plan(black_box(&host), None, black_box("bench"), None))
    });
    g.finish();
}

criterion_group!(benches, config, mount_plan, cgroup_layout);
criterion_main!(benches);
