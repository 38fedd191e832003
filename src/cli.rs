//! Command line: `start`, `check`, `configure`, `version`, `demo`.
//!
//! Run as `teleport-slack`, `teleport-discord` or `teleport-mattermost`
//! (a symlink or copy, the official plugins' command names), the binary acts
//! as that plugin: its name in `version` and `--help`, its example for
//! `configure`, its file as the default configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tracing::{error, info, warn};

use crate::app;
use crate::chat::{self, Chat};
use crate::config::{self, Config};

#[derive(Parser, Debug)]
#[command(
    name = "teleport-plugin",
    version,
    about = "Posts Teleport Access Requests to Slack, Discord and Mattermost and keeps the messages current",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the plugin.
    Start {
        /// Configuration file (TOML, or YAML with a .yaml/.yml extension).
        /// Default: the first of /etc/teleport-slack.toml,
        /// /etc/teleport-discord.toml, /etc/teleport-mattermost.toml that exists.
        #[arg(short, long, env = "TELEPORT_PLUGIN_CONFIG")]
        config: Option<PathBuf>,
        /// Log at debug level, whatever the configuration says.
        #[arg(short, long)]
        debug: bool,
    },
    /// Check a configuration: load it and the identity, connect to Teleport,
    /// ping it and test the chat tokens. Exits 0 when everything works.
    Check {
        #[arg(short, long, env = "TELEPORT_PLUGIN_CONFIG")]
        config: Option<PathBuf>,
        /// Only validate the configuration itself; read no files it names and
        /// contact nothing (e.g. for a rendered Helm chart).
        #[arg(long)]
        offline: bool,
    },
    /// Print a commented example configuration.
    Configure {
        /// Which chat (default: slack; the binary's own chat when run as
        /// teleport-slack, teleport-discord or teleport-mattermost).
        #[arg(value_enum)]
        chat: Option<ChatKind>,
    },
    /// Print the version.
    Version,
    /// Print the AccessRequestRoute CustomResourceDefinition (YAML).
    Crdgen,
    /// Show the plugin at work without a cluster: starts a built-in Teleport
    /// simulator, creates, reviews, approves, denies and expires requests, and
    /// prints every chat message as it is posted and updated.
    #[cfg(feature = "demo")]
    Demo {
        /// Pause between scenario steps (e.g. "500ms", "2s").
        #[arg(long, default_value = "1s")]
        pace: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatKind {
    Slack,
    Discord,
    Mattermost,
}

impl ChatKind {
    pub fn name(self) -> &'static str {
        match self {
            ChatKind::Slack => "slack",
            ChatKind::Discord => "discord",
            ChatKind::Mattermost => "mattermost",
        }
    }
}

/// Which plugin the binary is run as, from the name it was invoked by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persona(pub Option<ChatKind>);

impl Persona {
    /// From argv\[0\]: its file name `teleport-slack`, `teleport-discord` or
    /// `teleport-mattermost` (an `.exe` suffix allowed) selects that chat;
    /// any other name is the multi-chat `teleport-plugin`.
    pub fn from_argv0(argv0: Option<&std::ffi::OsStr>) -> Self {
        let stem = argv0.map(Path::new).and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or_default();
        let stem = stem.strip_suffix(".exe").unwrap_or(stem);
        Persona(match stem {
            "teleport-slack" => Some(ChatKind::Slack),
            "teleport-discord" => Some(ChatKind::Discord),
            "teleport-mattermost" => Some(ChatKind::Mattermost),
            _ => None,
        })
    }

    /// The command name shown in `version` and `--help`.
    pub fn command_name(self) -> &'static str {
        match self.0 {
            Some(ChatKind::Slack) => "teleport-slack",
            Some(ChatKind::Discord) => "teleport-discord",
            Some(ChatKind::Mattermost) => "teleport-mattermost",
            None => "teleport-plugin",
        }
    }

    fn chat(self) -> Option<&'static str> {
        self.0.map(ChatKind::name)
    }
}

impl Cli {
    /// Parses the process arguments for `persona` (names and defaults in
    /// `--help` follow it); exits with clap's message on bad arguments.
    pub fn parse_as(persona: Persona) -> Self {
        let name = persona.command_name();
        let mut cmd = Cli::command().name(name).bin_name(name);
        if let Some(chat) = persona.chat() {
            let default = format!("Configuration file (TOML, or YAML with a .yaml/.yml extension). Default: /etc/teleport-{chat}.toml.");
            cmd = cmd
                .about(format!("Posts Teleport Access Requests to {} and keeps the messages current", chat_title(chat)))
                .mut_subcommand("start", |c| c.mut_arg("config", |a| a.help(default.clone())))
                .mut_subcommand("check", |c| c.mut_arg("config", |a| a.help(default.clone())))
                .mut_subcommand("configure", |c| {
                    c.mut_arg("chat", |a| a.help(format!("Which chat (default: {chat}).")))
                });
        }
        let matches = cmd.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

fn chat_title(chat: &str) -> &'static str {
    match chat {
        "slack" => "Slack",
        "discord" => "Discord",
        _ => "Mattermost",
    }
}

pub async fn run(cli: Cli, persona: Persona) -> ExitCode {
    match cli.cmd {
        Cmd::Version => {
            println!("{} v{}", persona.command_name(), env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::Crdgen => {
            print!("{}", crate::k8s::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Cmd::Configure { chat } => {
            let name = chat.map(ChatKind::name).or(persona.chat()).unwrap_or("slack");
            print!("{}", config::example(name).expect("every chat has an example"));
            ExitCode::SUCCESS
        }
        Cmd::Start { config, debug } => match start(config, debug, persona).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Once: in the log when it goes to the console, else on
                // stderr (the log may be a file, or not set up yet).
                error!("Terminating with fatal error: {e:#}");
                if !crate::logging::logs_to_console() {
                    eprintln!("{}: {e:#}", persona.command_name());
                }
                ExitCode::FAILURE
            }
        },
        Cmd::Check { config, offline } => check(config, offline, persona).await,
        #[cfg(feature = "demo")]
        Cmd::Demo { pace } => match config::parse_duration(&pace) {
            Ok(pace) => match crate::demo::run(pace).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("--pace: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn config_path(given: Option<PathBuf>, persona: Persona) -> Result<PathBuf, String> {
    match given {
        Some(p) => Ok(p),
        None => config::default_path(persona.chat()),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

async fn start(config: Option<PathBuf>, debug: bool, persona: Persona) -> anyhow::Result<()> {
    let path = config_path(config, persona).map_err(anyhow::Error::msg)?;
    let cfg = load(&path)?;
    crate::logging::init(&cfg.log, debug).map_err(anyhow::Error::msg)?;
    info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), "Starting Teleport Access plugin");
    for w in &cfg.warnings {
        warn!("{w}");
    }
    if std::env::var_os("TELEPORT_PLUGIN_FAIL_FAST").is_some() {
        info!("TELEPORT_PLUGIN_FAIL_FAST is ignored: the plugin reconnects on its own and reports its state on /readyz");
    }
    let chats = build_chats(&cfg)?;
    // The probes answer while the start waits for its dependencies.
    let probes = Arc::new(crate::health::Probes::default());
    let http_stop = tokio_util::sync::CancellationToken::new();
    let http_addr = app::serve_probes(&cfg, &probes, &http_stop).await?;
    let kube_stop = tokio_util::sync::CancellationToken::new();
    let signal = wait_for_signal();
    tokio::pin!(signal);
    let bring_up = async {
        let k8s = crate::k8s::setup(&cfg, &kube_stop, &probes.startup).await?;
        let mut extras = k8s.extras;
        extras.probes = Some((probes.clone(), http_addr));
        anyhow::Ok((app::launch(&cfg, chats, extras).await?, k8s.routes))
    };
    let (running, routes) = tokio::select! {
        up = bring_up => up?,
        _ = &mut signal => {
            info!("stopped before the plugin was running");
            kube_stop.cancel();
            http_stop.cancel();
            return Ok(());
        }
    };
    crate::k8s::start_routes(routes, running.metrics.clone(), kube_stop.clone());
    if running.ready(Duration::from_secs(30)).await {
        info!("Plugin is ready");
    } else {
        warn!("Plugin is not ready yet; it keeps trying to reach Teleport");
    }
    signal.await;
    info!(grace = ?cfg.plugin.shutdown_grace, "shutting down");
    running.stop(cfg.plugin.shutdown_grace).await;
    kube_stop.cancel();
    http_stop.cancel();
    info!("Successfully shut down");
    Ok(())
}

pub fn build_chats(cfg: &Config) -> anyhow::Result<Vec<Arc<dyn Chat>>> {
    cfg.chats.iter().map(|c| chat::build(c).map_err(anyhow::Error::msg)).collect()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => info!("received SIGTERM"),
            _ = int.recv() => info!("received SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One line of the `check` report.
fn line(ok: bool, what: &str, detail: impl std::fmt::Display) {
    println!("  {} {what}: {detail}", if ok { "✔" } else { "✘" });
}

async fn check(config: Option<PathBuf>, offline: bool, persona: Persona) -> ExitCode {
    let path = match config_path(config, persona) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Checking {}", path.display());
    let loaded = if offline { Config::load_offline(&path) } else { Config::load(&path) };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            line(false, "configuration", e);
            return ExitCode::FAILURE;
        }
    };
    let chats: Vec<&str> = cfg.chats.iter().map(|c| c.plugin_name()).collect();
    line(true, "configuration", format!("valid; chats: {}", chats.join(", ")));
    for w in &cfg.warnings {
        println!("  ! {w}");
    }
    for c in &cfg.chats {
        line(true, &format!("{} review", c.plugin_name()), crate::config::review_summary(c, &cfg.http));
    }
    if offline {
        println!("Configuration is valid (offline check: files and services were not contacted).");
        return ExitCode::SUCCESS;
    }
    match check_online(&cfg).await {
        Ok(()) => {
            println!("All checks passed.");
            ExitCode::SUCCESS
        }
        Err(()) => ExitCode::FAILURE,
    }
}

async fn check_online(cfg: &Config) -> Result<(), ()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = match &cfg.teleport.identity {
        crate::config::IdentitySource::Secret { .. } => {
            // `start` waits for a Secret that is not there yet; a check
            // reports what it would wait for.
            let startup = crate::health::Startup::default();
            match tokio::time::timeout(Duration::from_secs(10), crate::k8s::setup(cfg, &stop, &startup)).await {
                Ok(setup) => setup.map(|s| s.extras.identity),
                Err(_) => Err(anyhow::anyhow!(startup.current().unwrap_or_else(|| "the identity Secret cannot be read".into()))),
            }
        }
        _ => app::file_identity(cfg, &stop).map(Some),
    };
    let publisher = match publisher {
        Ok(Some(p)) => p,
        Ok(None) => {
            line(false, "identity", "no identity source configured");
            return Err(());
        }
        Err(e) => {
            line(false, "identity", format!("{e:#}"));
            return Err(());
        }
    };
    let id = publisher.current();
    let left = humantime::format_duration(Duration::from_secs(id.remaining(SystemTime::now()).as_secs()));
    line(
        true,
        "identity",
        format!(
            "user {}, expires {} (in {left}), fingerprint {}",
            id.username,
            humantime::format_rfc3339_seconds(id.not_after),
            id.fingerprint
        ),
    );
    let dialer = crate::teleport::route::dialer_for(&cfg.teleport)
        .await
        .map_err(|e| line(false, "teleport", e))?;
    let (client, info) = crate::teleport::TeleportClient::connect(dialer, id, Default::default())
        .await
        .map_err(|e| line(false, "teleport", e))?;
    line(
        true,
        "teleport",
        format!("cluster {}, server version {}, path: {}", info.cluster_name, info.server_version, client.path()),
    );
    if let Some(w) = crate::teleport::client::untested_server_warning(&info.server_version) {
        println!("  ! {w}");
    }
    let chats = build_chats(cfg).map_err(|e| line(false, "chat", e))?;
    let mut ok = true;
    for c in chats {
        match c.health_check().await {
            Ok(who) => line(true, c.name(), format!("token accepted ({who})")),
            Err(e) => {
                ok = false;
                line(false, c.name(), e);
            }
        }
    }
    stop.cancel();
    if ok { Ok(()) } else { Err(()) }
}
