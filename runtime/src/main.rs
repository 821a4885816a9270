//! berth-runtime's command line: runc's commands and flags over the library, so containerd
//! and dockerd can use it as a drop-in.
//!
//! `no_main`: std's runtime start-up asks glibc for the main thread's stack bounds (which parses
//! /proc/self/maps with sscanf) to install a stack-overflow handler. A runtime started once per
//! container does not need that; without it, start-up costs a fraction. std::env::args still
//! works (glibc passes argv to std through .init_array).

#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use berth_runtime::container::{self, Container, ExecOptions, DEFAULT_ROOT};
use berth_runtime::{log, spec, CreateOptions};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "An OCI runtime on clone3 and pidfds, with runc's command line"
)]
struct Cli {
    /// Directory holding container state
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Write log messages to this file (default: stderr)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log debug messages too
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd (not supported)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: false or auto (true is not supported)
    #[arg(long, global = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Path to the bundle (the directory holding config.json)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Write the init's host pid here
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility; berth never creates a session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many descriptors after stdio (3, 4, …) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id
    id: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// process.json describing the process (instead of COMMAND and the flags below)
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Unix socket that receives the pty master
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Return once the process runs
    #[arg(short, long)]
    detach: bool,
    /// Write the process's host pid here
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE); repeatable
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID[:GID] to run as
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group ids; repeatable
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability (CAP_NET_ADMIN, …); repeatable
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set no_new_privs
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Pass this many descriptors after stdio to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id
    id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a default config.json into the bundle
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Rootless spec (not supported)
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Create a container; its process waits for `start`
    Create(CreateArgs),
    /// Start a created container's process
    Start { id: String },
    /// Create, start, wait for and delete a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the process runs, leaving the container behind
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Print the container's OCI state as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init
    Kill {
        /// Signal every process in the container
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container and everything it holds
    Delete {
        /// Kill it first if it is running
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Only ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the container's processes
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        id: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process inside a running container
    Exec(ExecArgs),
    /// Freeze every process in the container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Print what this runtime supports (JSON)
    Features,
    /// Change a live container's resource limits
    Update(UpdateArgs),
    /// Resource statistics (--stats: once) or a stream of them and OOM events
    Events {
        /// Print one stats event and exit
        #[arg(long)]
        stats: bool,
        /// Time between stats events when streaming (e.g. 5s, 500ms)
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(clap::Args, Debug)]
struct UpdateArgs {
    /// linux.resources JSON file ("-" for stdin); flags override its values
    #[arg(short = 'r', long = "resources")]
    resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with a k/m/g suffix)
    #[arg(long)]
    memory: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    id: String,
}

#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let code = real_main();
    let _ = std::io::stdout().flush();
    code
}

fn real_main() -> libc::c_int {
    // As std's start-up would: a closed stdout is an error, not a fatal signal.
    // SAFETY: setting a signal to SIG_IGN has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => log::Format::Text,
        LogFormat::Json => log::Format::Json,
    };
    if let Err(e) = log::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!("berth-runtime: open log file: {e}");
        return 1;
    }
    match dispatch(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            let msg = format!("{e:#}");
            if log::has_file() {
                log::error(&msg);
            }
            eprintln!("berth-runtime: {msg}");
            1
        }
    }
}

fn create_options(root: &Path, a: CreateArgs) -> CreateOptions {
    let _ = a.no_new_keyring;
    CreateOptions {
        id: a.id,
        bundle: a.bundle,
        root: root.to_path_buf(),
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        stdio: None,
        park: false,
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: berth-runtime manages cgroupfs directly (v1, v2 and hybrid)");
    }
    match cli.rootless.as_deref() {
        None | Some("false") | Some("auto") => {}
        Some(v) => bail!("--rootless={v} is not supported: berth-runtime runs as root"),
    }
    let root = cli.root.as_path();
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Spec { bundle, rootless } => {
            if rootless {
                bail!("spec --rootless is not supported");
            }
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} exists; remove it first", path.display());
            }
            std::fs::write(&path, spec::DEFAULT_SPEC)
                .with_context(|| format!("write {}", path.display()))?;
        }
        Cmd::Create(a) => {
            let opts = create_options(root, a);
            // As runc: a detached container's terminal must go to someone over a socket.
            if opts.console_socket.is_none() && terminal_requested(&opts.bundle)? {
                bail!("process.terminal is true: --console-socket is required");
            }
            container::create(&opts)?;
        }
        Cmd::Start { id } => container::start(root, &id)?,
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            let status = container::run(&create_options(root, create), detach, keep)?;
            return Ok(status.clamp(0, 255) as u8);
        }
        Cmd::State { id } => {
            let c = Container::load(root, &id)?;
            let s = c.oci_state(c.status());
            serde_json::to_writer_pretty(&mut out, &s)?;
            writeln!(out)?;
        }
        Cmd::Kill { all, id, signal } => {
            let sig = match signal.as_deref() {
                None => libc::SIGTERM,
                Some(s) => {
                    container::parse_signal(s).ok_or_else(|| anyhow!("unknown signal {s:?}"))?
                }
            };
            container::kill(root, &id, sig, all)?;
        }
        Cmd::Delete { force, id } => container::delete(root, &id, force)?,
        Cmd::List { format, quiet } => print_list(&mut out, root, format, quiet)?,
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => print_ps(&mut out, root, &id, format, &ps_args)?,
        Cmd::Exec(a) => {
            let detach = a.detach;
            let id = a.id.clone();
            let opts = exec_options(root, a)?;
            if detach {
                if opts.console_socket.is_none() && opts.process.terminal().unwrap_or(false) {
                    bail!("exec --detach --tty needs --console-socket");
                }
                container::exec(root, &id, &opts)?;
            } else {
                let status = container::exec_and_wait(root, &id, &opts)?;
                return Ok(status.clamp(0, 255) as u8);
            }
        }
        Cmd::Pause { id } => container::pause(root, &id)?,
        Cmd::Resume { id } => container::resume(root, &id)?,
        Cmd::Update(a) => {
            let id = a.id.clone();
            container::update(root, &id, &update_resources(a)?)?;
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => return events(&mut out, root, &id, stats, &interval),
        Cmd::Features => {
            serde_json::to_writer_pretty(&mut out, &berth_runtime::features::features())?;
            writeln!(out)?;
        }
    }
    Ok(0)
}

/// "-1" (unlimited), bytes, or k/m/g/t suffixed sizes, as runc's update flags take them.
fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    Ok((n * mult as f64) as i64)
}

/// The resources of `update`: the -r file (if any), then each flag on top.
fn update_resources(a: UpdateArgs) -> anyhow::Result<oci_spec::runtime::LinuxResources> {
    let mut v: serde_json::Value = match &a.resources {
        None => serde_json::json!({}),
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?
            };
            serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))?
        }
    };
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = val;
    };
    use serde_json::json;
    if let Some(x) = a.blkio_weight {
        set("blockIO", "weight", json!(x));
    }
    if let Some(x) = a.cpu_period {
        set("cpu", "period", json!(x));
    }
    if let Some(x) = a.cpu_quota {
        set("cpu", "quota", json!(x));
    }
    if let Some(x) = a.cpu_share {
        set("cpu", "shares", json!(x));
    }
    if let Some(x) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(x));
    }
    if let Some(x) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(x));
    }
    if let Some(x) = a.cpuset_cpus {
        set("cpu", "cpus", json!(x));
    }
    if let Some(x) = a.cpuset_mems {
        set("cpu", "mems", json!(x));
    }
    if let Some(x) = a.memory {
        set("memory", "limit", json!(parse_bytes(&x)?));
    }
    if let Some(x) = a.memory_reservation {
        set("memory", "reservation", json!(parse_bytes(&x)?));
    }
    if let Some(x) = a.memory_swap {
        set("memory", "swap", json!(parse_bytes(&x)?));
    }
    if let Some(x) = a.pids_limit {
        set("pids", "limit", json!(x));
    }
    serde_json::from_value(v).context("invalid resources")
}

/// runc's `events`: `{"type":"stats","id":…,"data":…}` lines; `oom` when the OOM counter
/// grows. Streaming ends when the container stops.
fn events(
    out: &mut impl Write,
    root: &Path,
    id: &str,
    once: bool,
    interval: &str,
) -> anyhow::Result<u8> {
    let every = parse_interval(interval)?;
    let mut ooms = None;
    loop {
        let stats = match container::stats(root, id) {
            Ok(s) => s,
            Err(_) if !once && ooms.is_some() => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        if let Some(prev) = ooms {
            if stats.memory.oom_kills > prev {
                writeln!(out, "{}", serde_json::json!({"type": "oom", "id": id}))?;
            }
        }
        ooms = Some(stats.memory.oom_kills);
        writeln!(
            out,
            "{}",
            serde_json::json!({"type": "stats", "id": id, "data": stats})
        )?;
        out.flush()?;
        if once {
            return Ok(0);
        }
        std::thread::sleep(every);
    }
}

fn parse_interval(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid interval {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => bail!("invalid interval {s:?}"),
    };
    if secs <= 0.0 {
        bail!("interval must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// runc's exec: a process.json, or the container's own process with COMMAND and the flags.
fn exec_options(root: &Path, a: ExecArgs) -> anyhow::Result<ExecOptions> {
    use oci_spec::runtime::{Capabilities, Capability, Process};
    use std::str::FromStr;
    let mut p: Process = match &a.process {
        Some(path) => {
            if !a.command.is_empty() {
                bail!("give either --process or a command, not both");
            }
            let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("invalid process {}", path.display()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command (or --process)");
            }
            let c = Container::load(root, &a.id)?;
            let b = spec::load_created(&c.record.bundle)?;
            let mut p = b.spec.process().clone().unwrap_or_default();
            p.set_args(Some(a.command.clone()));
            p
        }
    };
    if a.tty {
        p.set_terminal(Some(true));
    } else if a.process.is_none() {
        p.set_terminal(Some(false));
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(cwd) = a.cwd {
        p.set_cwd(cwd);
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse()?, g.parse()?),
            None => (u.parse()?, p.user().gid()),
        };
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<Capabilities>, c: Capability| {
            let mut s = set.clone().unwrap_or_default();
            s.insert(c);
            Some(s)
        };
        for name in &a.cap {
            let short = name.strip_prefix("CAP_").unwrap_or(name);
            let c =
                Capability::from_str(short).map_err(|_| anyhow!("unknown capability {name}"))?;
            caps.set_bounding(add(caps.bounding(), c));
            caps.set_effective(add(caps.effective(), c));
            caps.set_permitted(add(caps.permitted(), c));
            if caps.inheritable().is_some() {
                caps.set_ambient(add(caps.ambient(), c));
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok(ExecOptions {
        process: p,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        preserve_fds: a.preserve_fds,
        stdio: None,
    })
}

fn terminal_requested(bundle: &Path) -> anyhow::Result<bool> {
    let b = spec::load(bundle)?;
    Ok(b.spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false))
}

fn print_list(
    out: &mut impl Write,
    root: &Path,
    format: Format,
    quiet: bool,
) -> anyhow::Result<()> {
    let all = container::list(root)?;
    if quiet {
        for (c, _) in &all {
            writeln!(out, "{}", c.record.id)?;
        }
        return Ok(());
    }
    if format == Format::Json {
        let states: Vec<_> = all.iter().map(|(c, s)| c.oci_state(*s)).collect();
        serde_json::to_writer(&mut *out, &states)?;
        writeln!(out)?;
        return Ok(());
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|(c, s)| {
            let st = c.oci_state(*s);
            [
                c.record.id.clone(),
                st.pid.to_string(),
                s.as_str().to_string(),
                c.record.bundle.display().to_string(),
                c.record.created.clone(),
                "root".to_string(),
            ]
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = width[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn print_ps(
    out: &mut impl Write,
    root: &Path,
    id: &str,
    format: Format,
    args: &[String],
) -> anyhow::Result<()> {
    let pids = container::ps_pids(root, id)?;
    if format == Format::Json {
        serde_json::to_writer(&mut *out, &pids)?;
        writeln!(out)?;
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let o = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !o.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("ps output has no PID column"))?;
    writeln!(out, "{header}")?;
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}
