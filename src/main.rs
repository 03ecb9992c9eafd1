//! `hipbone`: the command line. Key commands follow WireGuard's `wg` habits (keys are base64
//! on stdin/stdout, so they compose in pipes: `hipbone genkey | hipbone hit`); `sim` runs
//! the deterministic simulator.
//!
//! Errors print as one line, `hipbone: error: …`, on stderr with exit status 1 (usage errors
//! are clap's, status 2). Logs go to stderr; `-v` raises the level, `RUST_LOG` overrides it.
//! No key material is ever logged; the only keys printed are the ones `genkey` and `pubkey`
//! are asked for.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgAction, Parser, Subcommand};
use hipbone::config::{self, Config};
use hipbone::control;
use hipbone::keys::{self, KeyOrigin};
use tracing_subscriber::EnvFilter;
use zeroize::Zeroizing;

/// Host Identity Protocol node with a P2PSIP overlay.
#[derive(Debug, Parser)]
#[command(name = "hipbone", version)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a new Ed25519 private key and print it in base64 on stdout.
    Genkey {
        /// Write the key to this new file (mode 0600, never overwritten) instead, and print
        /// its HIT on stderr.
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read a base64 private key on stdin and print its base64 public key.
    Pubkey,
    /// Print the HIT (an IPv6 address in 2001:20::/28) of a key.
    ///
    /// Reads a base64 private key on stdin, or a public key with --public, or a private key
    /// file with --key.
    Hit {
        /// Read the private key from this key file (must be mode 0600 or stricter).
        #[arg(short, long, value_name = "FILE", conflicts_with = "public")]
        key: Option<PathBuf>,
        /// Read a base64 public key on stdin instead of a private key.
        #[arg(long)]
        public: bool,
    },
    /// Run the node: bring up the TUN device and serve HIP and ESP (as root, in the
    /// foreground; stop it with `hipbone down` or a signal).
    Up {
        /// Configuration file (TOML); without it, /etc/hipbone/hipbone.toml if present,
        /// else the defaults.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Stop the node that serves the given control socket (or the default one of hip0).
    Down {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show the node's identity and associations, like `wg show`.
    Status {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the raw JSON document instead.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running node about its overlay, or store and fetch through it (debugging).
    Overlay {
        /// Configuration file; also accepted after the subcommand
        /// (`hipbone overlay status -c FILE`).
        #[arg(short, long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: OverlayCommand,
    },
    /// Print the HIT and LSI an ID-LOC name (`label.<overlay>`) stands for, as the
    /// running node resolves it through the overlay.
    Resolve {
        name: String,
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the raw JSON document instead.
        #[arg(long)]
        json: bool,
    },
    /// ID-LOC names: grant them (as a signer of the overlay), claim, release and list the
    /// running node's.
    #[command(subcommand)]
    Name(NameCommand),
    /// Run the deterministic simulator.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Debug, Subcommand)]
enum NameCommand {
    /// Grant LABEL.<overlay> to the node with HIT, signed by a signer's key; prints the
    /// grant (base64) for that node's `[overlay] grant`.
    Grant {
        label: String,
        hit: hip::Hit,
        /// The signer's private key file (its public key is in the overlay's `signers`).
        #[arg(short, long, value_name = "FILE")]
        key: PathBuf,
        /// The overlay's name (`[overlay] name`).
        #[arg(long, value_name = "NAME")]
        overlay: String,
        /// Days the grant holds.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// The running node holds LABEL.<overlay> from now on (until it stops: to keep it, put
    /// `label` and `grant` in `[overlay]`); returns once its claim is stored.
    Claim {
        label: String,
        /// The grant of the name to this node, as `hipbone name grant` printed it.
        #[arg(long, value_name = "BASE64")]
        grant: String,
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The running node gives up its name: its claim is deleted from the overlay.
    Release {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The name the running node holds, and the names it resolved lately.
    List {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the raw JSON document instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OverlayCommand {
    /// The node's place on the ring, its neighbours, links and stored records (JSON).
    Status,
    /// Append VALUE to this node's debugging record (stored under its own HIT).
    Store { value: String },
    /// Print the debugging record of the node with this HIT.
    Fetch { hit: hip::Hit },
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// One base exchange between two simulated hosts, with its timeline.
    Bex(hipbone::sim::bex::BexArgs),
    /// A ring of overlay nodes: joins, stores, lookups, churn; hop counts and costs.
    Overlay(hipbone::sim::overlay::OverlayArgs),
    /// Whole nodes (HIP, overlay, the overlay's links inside HIP associations) joining one
    /// ring through one bootstrap; what it costs.
    Nodes(hipbone::sim::nodes::NodesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.verbose) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the cause chain on one line: "context: cause: cause".
            eprintln!("hipbone: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr. The filter is `RUST_LOG` if set, else the `-v` level if given, else
/// `default` (the node's `interface.log`, or warnings for the other commands).
fn init_tracing(verbose: u8, default: &str) {
    let filter = if std::env::var_os("RUST_LOG").is_some() {
        EnvFilter::from_default_env()
    } else {
        EnvFilter::new(match verbose {
            0 => default,
            1 => "info",
            2 => "debug",
            _ => "trace",
        })
    };
    // Colour codes only for a terminal: a log file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
}

fn run(command: Command, verbose: u8) -> anyhow::Result<()> {
    match command {
        Command::Up { config } => {
            let config = load_config(config.as_deref())?;
            init_tracing(verbose, &config.interface.log);
            hipbone::daemon::run(config)
        }
        other => {
            init_tracing(verbose, "warn");
            run_tool(other)
        }
    }
}

/// Every command but `up`.
fn run_tool(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Genkey { out } => genkey(out),
        Command::Pubkey => {
            let identity = keys::read_private_key(io::stdin().lock(), KeyOrigin::Stdin)?;
            print_line(&keys::encode_public(identity.public()))
        }
        Command::Hit { key, public } => {
            let hit = match (key, public) {
                (Some(path), _) => keys::read_key_file(&path)?.hit(),
                (None, true) => keys::read_public_key(io::stdin().lock(), KeyOrigin::Stdin)?.hit(),
                (None, false) => {
                    keys::read_private_key(io::stdin().lock(), KeyOrigin::Stdin)?.hit()
                }
            };
            print_line(&hit.to_string())
        }
        Command::Up { .. } => anyhow::bail!("`up` is not a tool command"),
        Command::Down { config } => {
            let path = load_config(config.as_deref())?.interface.control_path();
            control::call(&path, control::Request::Down)?;
            Ok(())
        }
        Command::Status { config, json } => {
            let path = load_config(config.as_deref())?.interface.control_path();
            let answer = control::call(&path, control::Request::Status)?;
            if json {
                print_line(answer.trim_end())
            } else {
                let status: control::Status = serde_json::from_str(&answer)
                    .context("the daemon's status answer is not what this hipbone expects")?;
                print!("{}", control::render(&status));
                Ok(())
            }
        }
        Command::Overlay { config, command } => {
            let path = load_config(config.as_deref())?.interface.control_path();
            let request = match command {
                OverlayCommand::Status => control::Request::OverlayStatus,
                OverlayCommand::Store { value } => {
                    if value.len() > control::MAX_VALUE || value.contains('\n') {
                        anyhow::bail!(
                            "the value must be one line of at most {} bytes",
                            control::MAX_VALUE
                        );
                    }
                    control::Request::OverlayStore(value)
                }
                OverlayCommand::Fetch { hit } => control::Request::OverlayFetch(hit),
            };
            let answer = control::call(&path, request)?;
            if let Some(e) = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            {
                anyhow::bail!("{e}");
            }
            print_line(answer.trim_end())
        }
        Command::Resolve { name, config, json } => {
            let path = load_config(config.as_deref())?.interface.control_path();
            let v = ask(&path, control::Request::Resolve(name))?;
            if json {
                return print_line(&v.to_string());
            }
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_owned();
            print_line(&format!(
                "{} hit {} lsi {}",
                field("name"),
                field("hit"),
                field("lsi")
            ))
        }
        Command::Name(NameCommand::Grant {
            label,
            hit,
            key,
            overlay,
            days,
        }) => {
            let signer = hipbone::keys::read_key_file(&key)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            print_line(&hipbone::names::grant(
                &signer, &label, &overlay, hit, days, now,
            )?)
        }
        Command::Name(NameCommand::Claim {
            label,
            grant,
            config,
        }) => {
            hipbone::names::parse_grant(&grant).map_err(|e| anyhow::anyhow!("--grant: {e}"))?;
            let path = load_config(config.as_deref())?.interface.control_path();
            let v = ask(&path, control::Request::NameClaim { label, grant })?;
            print_line(&format!(
                "{} is held by this node (until it stops: put label and grant in [overlay] \
                 to keep it)",
                v["name"].as_str().unwrap_or("-")
            ))
        }
        Command::Name(NameCommand::Release { config }) => {
            let path = load_config(config.as_deref())?.interface.control_path();
            let v = ask(&path, control::Request::NameRelease)?;
            print_line(&format!("released {}", v["name"].as_str().unwrap_or("-")))
        }
        Command::Name(NameCommand::List { config, json }) => {
            let path = load_config(config.as_deref())?.interface.control_path();
            let v = ask(&path, control::Request::NameList)?;
            if json {
                return print_line(&v.to_string());
            }
            let held = match v["name"].as_str() {
                Some(name) => format!(
                    "holds {name} ({}, grant ends at Unix time {})",
                    v["state"].as_str().unwrap_or("-"),
                    v["expires"]
                ),
                None => "holds no name".to_string(),
            };
            let mut out = held;
            for r in v["resolved"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "\n{} hit {} (cached {} s more)",
                    r["name"].as_str().unwrap_or("-"),
                    r["hit"].as_str().unwrap_or("-"),
                    r["cached_for"]
                ));
            }
            print_line(&out)
        }
        Command::Sim(SimCommand::Bex(args)) => hipbone::sim::bex::run(&args),
        Command::Sim(SimCommand::Overlay(args)) => hipbone::sim::overlay::run(&args),
        Command::Sim(SimCommand::Nodes(args)) => hipbone::sim::nodes::run(&args),
    }
}

/// Sends `request` to the running node; its answer, or its error as ours.
fn ask(path: &std::path::Path, request: control::Request) -> anyhow::Result<serde_json::Value> {
    let answer = control::call(path, request)?;
    let v: serde_json::Value = serde_json::from_str(&answer)
        .context("the daemon's answer is not what this hipbone expects")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(v)
}

/// The configuration named with -c, or the default file if it exists, or the defaults.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::load_or_default(std::path::Path::new(config::DEFAULT_PATH))?,
    })
}

fn genkey(out: Option<PathBuf>) -> anyhow::Result<()> {
    let mut secret = Zeroizing::new([0u8; keys::KEY_LEN]);
    getrandom::getrandom(&mut secret[..])
        .map_err(|e| anyhow::anyhow!("drawing randomness from the operating system: {e}"))?;
    let identity = hip::HostIdentity::from_secret(*secret);
    match out {
        Some(path) => {
            keys::write_key_file(&path, &identity)?;
            tracing::info!(path = %path.display(), hit = %identity.hit(), "generated key");
            eprintln!("{}", identity.hit());
            Ok(())
        }
        None => print_line(&keys::encode_private(&identity)),
    }
}

/// Writes one line to stdout, reporting (not panicking on) a closed pipe.
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
