//! Parked containers, in-process as berth-shim uses them: `create_parked` sets a container up
//! without its program, `claim` gives it one from a config that differs only there, and
//! `start` (the command line) runs it.

mod common;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};

use berth_runtime::container::{self, CreateOptions};
use berth_runtime::sys::{self, Exit};
use common::{Bundle, Runtime};
use serde_json::json;

fn options(rt: &Runtime, b: &Bundle, id: &str, stdio: [i32; 3]) -> CreateOptions {
    CreateOptions {
        id: id.into(),
        bundle: b.path().to_path_buf(),
        root: rt.root.path().to_path_buf(),
        stdio: Some(stdio),
        ..Default::default()
    }
}

#[test]
fn a_claimed_container_runs_the_claims_program() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "echo parked program; exit 3"]);
    let id = common::unique_id("parked");
    let null = std::fs::File::open("/dev/null").unwrap();
    let (r, w) = sys::pipe().unwrap();
    let stdio = [null.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()];
    let parked = container::create_parked(&options(&rt, &b, &id, stdio)).unwrap();
    assert_eq!(rt.status(&id), "created");
    b.edit(|c| {
        c["process"]["args"] = json!(["sh", "-c", "echo $A $(id -u) $(id -G) $(pwd); exit 7"]);
        c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "A=claimed"]);
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["user"] = json!({"uid": 1, "gid": 2, "additionalGids": [3]});
    });
    let spawned = container::claim(parked, b.path()).unwrap();
    drop(w);
    rt.ok(&["start", &id]);
    let exit = sys::waitid_pidfd(spawned.pidfd.as_fd(), false).unwrap();
    assert!(matches!(exit, Some(Exit::Code(7))), "{exit:?}");
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(out, "claimed 1 2 3 /tmp\n");
    rt.ok(&["delete", &id]);
}

/// Parks `true` with stdio on /dev/null, edits its config with `edit`, claims it: the
/// claim's error, after checking that the container and its init are gone.
fn failed_claim(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    let id = common::unique_id("parked");
    let null = std::fs::File::open("/dev/null").unwrap();
    let fd = null.as_raw_fd();
    let parked = container::create_parked(&options(&rt, &b, &id, [fd, fd, fd])).unwrap();
    let pid = parked.container().record.pid;
    b.edit(edit);
    let err = container::claim(parked, b.path())
        .err()
        .expect("the claim fails")
        .to_string();
    assert!(!rt.container_dir(&id).exists());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    err
}

#[test]
fn a_claim_that_changes_more_than_the_program_is_refused_and_destroys() {
    let err = failed_claim(|c| c["hostname"] = json!("other"));
    assert!(err.contains("more than its program"), "{err}");
}

#[test]
fn a_claimed_program_that_is_missing_fails_the_claim() {
    let err = failed_claim(|c| c["process"]["args"] = json!(["no-such-program"]));
    assert!(err.contains("executable file not found"), "{err}");
}

#[test]
fn a_terminal_cannot_be_parked() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let id = common::unique_id("parked");
    let null = std::fs::File::open("/dev/null").unwrap();
    let fd = null.as_raw_fd();
    let err = container::create_parked(&options(&rt, &b, &id, [fd, fd, fd]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot have a terminal"), "{err}");
    assert!(!rt.container_dir(&id).exists());
}
