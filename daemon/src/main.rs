//! berthd: serve the Docker Engine API.

use std::path::PathBuf;

use anyhow::Context;
use berthd::config::{self, Config, FileConfig};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "The Docker Engine API on berth-shim and berth-runtime"
)]
struct Args {
    /// Address to serve: unix:///path or fd:// (may be repeated)
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Persistent state: images, containers, volumes
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Runtime state (sockets, bundles): lost at reboot
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// daemon.json-style configuration file
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Log every request
    #[arg(short = 'D', long)]
    debug: bool,
    /// The berth-shim binary (default: beside berthd)
    #[arg(long)]
    shim: Option<PathBuf>,
    /// Group owning the API socket
    #[arg(short = 'G', long)]
    group: Option<String>,
    /// Do not keep a container parked (created ahead, without its program) for the next
    /// create like the last one
    #[arg(long)]
    no_park: bool,
}

fn config(a: Args) -> anyhow::Result<Config> {
    let file = match &a.config_file {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut hosts = a.hosts;
    if hosts.is_empty() {
        hosts = file.hosts.clone().unwrap_or_default();
    } else if file.hosts.is_some() {
        anyhow::bail!("hosts are given both as -H flags and in the config file");
    }
    if hosts.is_empty() {
        hosts.push(config::DEFAULT_HOST.to_string());
    }
    let opts = file.log_opts.unwrap_or_default();
    let here = std::env::current_exe().context("locating berthd")?;
    let shim = a.shim.unwrap_or_else(|| here.with_file_name("berth-shim"));
    Ok(Config {
        hosts,
        data_root: file.data_root.unwrap_or(a.data_root),
        exec_root: file.exec_root.unwrap_or(a.exec_root),
        debug: a.debug || file.debug.unwrap_or(false),
        log_max_size: opts
            .max_size
            .as_deref()
            .map(config::parse_size)
            .transpose()?
            .unwrap_or(0),
        log_max_file: opts
            .max_file
            .as_deref()
            .map(str::parse)
            .transpose()
            .context("log-opts max-file")?
            .unwrap_or(1),
        shim,
        group: a.group.or(file.group).or_else(|| Some("docker".into())),
        park: !a.no_park && file.park_containers.unwrap_or(true),
    })
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let cfg = config(args)?;
    berthd::log::set_debug(cfg.debug);
    if !cfg.shim.is_file() {
        anyhow::bail!(
            "berth-shim not found at {} (build it, or pass --shim)",
            cfg.shim.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listeners = berthd::server::bind(&cfg.hosts, cfg.group.as_deref())?;
        let hosts = cfg.hosts.clone();
        let daemon = berthd::daemon::Daemon::open(cfg)?;
        daemon.restore().await.context("restoring containers")?;
        daemon.shims.refill(&daemon.cfg.shim);
        for l in listeners {
            tokio::spawn(berthd::server::serve(daemon.clone(), l));
        }
        berthd::log::info(format_args!(
            "berthd {} serving {}",
            env!("CARGO_PKG_VERSION"),
            hosts.join(", ")
        ));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        // Containers keep running under their shims; only the API goes away, with what was
        // made ahead for containers not yet created.
        berthd::log::info(format_args!("berthd stopping; containers keep running"));
        let d = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || d.slots.clear()).await;
        for h in &hosts {
            if let Some(p) = h.strip_prefix("unix://") {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    })
}
