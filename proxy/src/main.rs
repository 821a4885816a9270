//! The berth-proxy binary: `serve` for the daemon, `ctl` for people, and docker-proxy's own
//! command line when dockerd starts it through `userland-proxy-path`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_proxy::compat;
use berth_proxy::protocol::{Client, MappingSpec, Proto};
use berth_proxy::{Config, Engine};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-proxy",
    version,
    about = "One process for every published port"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Tuning {
    /// Bytes per splice pipe (F_SETPIPE_SZ).
    #[arg(long, default_value_t = Config::default().pipe_size)]
    pipe_size: usize,
    /// Most splice pipes alive at once; beyond, bytes are copied through a buffer.
    #[arg(long, default_value_t = Config::default().max_pipes)]
    max_pipes: usize,
    /// Seconds before an idle UDP flow is forgotten.
    #[arg(long, default_value_t = 90)]
    udp_timeout: u64,
    /// Most UDP flows per mapping.
    #[arg(long, default_value_t = Config::default().udp_max_flows)]
    udp_max_flows: usize,
    /// Seconds to let connections finish after SIGTERM.
    #[arg(long, default_value_t = 5)]
    drain_timeout: u64,
    /// Event loop: io-uring, epoll, or auto (io_uring, falling back to epoll).
    #[arg(long, value_enum, default_value = "auto")]
    event_loop: berth_proxy::reactor::EventLoop,
}

impl Tuning {
    fn config(&self) -> Config {
        Config {
            pipe_size: self.pipe_size,
            max_pipes: self.max_pipes,
            udp_idle: Duration::from_secs(self.udp_timeout),
            udp_max_flows: self.udp_max_flows,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            event_loop: self.event_loop,
            ..Config::default()
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy: mappings from --map and from the control socket.
    Serve {
        /// Unix socket for the control protocol (see proxy/README.md).
        #[arg(long)]
        control: Option<PathBuf>,
        /// A mapping to start with: PROTO,HOST_ADDR:PORT,CONTAINER_ADDR:PORT (repeatable).
        #[arg(long = "map", value_parser = parse_map)]
        maps: Vec<MappingSpec>,
        /// Mirror the mappings as DNAT rules in nftables table `inet berth` (removed on exit).
        #[arg(long)]
        nftables: bool,
        /// Container subnet to masquerade when its traffic leaves it (with --nftables; repeatable).
        #[arg(long = "masquerade", requires = "nftables")]
        masquerade: Vec<berth_proxy::nft::Subnet>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Talk to a running proxy.
    Ctl {
        #[arg(long)]
        control: PathBuf,
        #[command(subcommand)]
        op: CtlOp,
    },
}

#[derive(Subcommand)]
enum CtlOp {
    /// Add PROTO,HOST_ADDR:PORT,CONTAINER_ADDR:PORT.
    Add {
        #[arg(value_parser = parse_map)]
        map: MappingSpec,
    },
    Remove {
        id: u64,
    },
    List,
}

fn parse_map(s: &str) -> Result<MappingSpec, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [proto, host, container] = parts[..] else {
        return Err(format!(
            "{s:?}: want PROTO,HOST_ADDR:PORT,CONTAINER_ADDR:PORT"
        ));
    };
    Ok(MappingSpec {
        proto: proto.parse::<Proto>()?,
        host: host
            .parse()
            .map_err(|e| format!("host address {host:?}: {e}"))?,
        container: container
            .parse()
            .map_err(|e| format!("container address {container:?}: {e}"))?,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if compat::is_compat_invocation(&args) {
        run_compat(&args[1..]);
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            control,
            maps,
            nftables,
            masquerade,
            tuning,
        } => {
            if let Ok(n) = berth_proxy::sys::raise_nofile_limit() {
                eprintln!("berth-proxy: descriptor limit {n}");
            }
            let mut engine = Engine::new(tuning.config())?;
            for m in maps {
                engine
                    .add_mapping(m)
                    .with_context(|| format!("add mapping {m}"))?;
            }
            if nftables {
                engine.manage_nftables(masquerade).context("nftables")?;
                eprintln!(
                    "berth-proxy: nftables table inet {} in sync",
                    berth_proxy::nft::TABLE
                );
            }
            if let Some(path) = &control {
                engine.listen_control(path)?;
                eprintln!("berth-proxy: control socket {}", path.display());
            }
            engine.run()?;
            Ok(())
        }
        Cmd::Ctl { control, op } => {
            let mut c = Client::connect(&control)?;
            match op {
                CtlOp::Add { map } => println!("{}", c.add(map)?),
                CtlOp::Remove { id } => c.remove(id)?,
                CtlOp::List => {
                    for m in c.list()? {
                        println!("{}", serde_json::to_string(&m)?);
                    }
                }
            }
            Ok(())
        }
    }
}

/// docker-proxy mode: one mapping, readiness on fd 3, exit 1 on a start-up error.
fn run_compat(args: &[String]) -> ! {
    let fail = |msg: String| -> ! {
        compat::report(Err(&msg));
        eprintln!("berth-proxy: {msg}");
        std::process::exit(1);
    };
    let parsed = compat::parse(args).unwrap_or_else(|e| fail(e.to_string()));
    let cfg = Config {
        // dockerd waits for the proxy to exit when it unpublishes a port.
        drain_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let mut engine = Engine::new(cfg).unwrap_or_else(|e| fail(e.to_string()));
    let added = if parsed.use_listen_fd {
        match compat::take_listen_fd() {
            Some(fd) => engine.add_mapping_with_socket(parsed.spec, fd),
            None => fail("-use-listen-fd given but fd 4 is not open".into()),
        }
    } else {
        engine.add_mapping(parsed.spec)
    };
    if let Err(e) = added {
        fail(e.to_string());
    }
    compat::report(Ok(()));
    match engine.run() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("berth-proxy: {e}");
            std::process::exit(1);
        }
    }
}
