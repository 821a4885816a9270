//! The shim's per-byte work on the container's output: building json-file entries (escape,
//! split into lines, stamp) and reading a log back (`docker logs`). perf/shim.sh measures the
//! whole relay with a container, side by side with a host pipe; these isolate the encoder and
//! the decoder from the syscalls around them.
//!
//!   cargo bench -p berth-benches --bench shim -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::path::Path;

use berth_shim::logfile::{LogWriter, Stream};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// 1 MiB (13,107 lines) of perf/shim.sh's 80-byte lines.
fn lines() -> Vec<u8> {
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789012345678\n";
    line.iter()
        .copied()
        .cycle()
        .take(13_107 * line.len())
        .collect()
}

fn encode(c: &mut Criterion) {
    let text = lines();
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(text.len() as u64));
    // /dev/null: the entries are built and written, the write costs next to nothing.
    let mut w = LogWriter::open(Path::new("/dev/null"), 0, 1).expect("open /dev/null");
    g.bench_function("encode/80-byte lines", |b| {
        b.iter(|| {
            // As the shim reads: 128 KiB at a time, lines cut across reads.
            for chunk in black_box(&text).chunks(128 * 1024) {
                w.feed(Stream::Stdout, chunk).expect("feed");
            }
            w.flush().expect("flush");
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let text = lines();
    let dir = std::env::temp_dir().join(format!("berth-bench-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("c.log");
    let mut w = LogWriter::open(&path, 0, 1).expect("open log");
    for chunk in text.chunks(128 * 1024) {
        w.feed(Stream::Stdout, chunk).expect("feed");
    }
    w.flush().expect("flush");
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("decode/80-byte lines", |b| {
        b.iter(|| {
            berth_shim::logread::copy_log(
                &path,
                &[Stream::Stdout, Stream::Stderr],
                &mut std::io::sink(),
            )
            .expect("read back")
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
