//! Command-line definitions (clap). The contract is documented in README "Commands".

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about = "Stand up Docker Swarm, Kubernetes and Mesos clusters on local Docker, existing hosts, EC2 and OpenStack", long_about = None)]
pub struct Cli {
    /// State directory (default: $FLOTILLA_HOME, else $XDG_STATE_HOME/flotilla, else ~/.local/state/flotilla).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Where states and locks live: `file` (the home's own files, the default) or
    /// `postgres://user@host:port/db` (password from the URL or PGPASSWORD).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "FLOTILLA_BACKEND",
        hide_env_values = true
    )]
    pub backend: Option<String>,
    /// Output format on stdout.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// No progress on stderr (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log detail on stderr (-v info, -vv debug); or set FLOTILLA_LOG=<filter>.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct BlueprintArgs {
    /// Blueprint file (YAML + tera).
    pub blueprint: PathBuf,
    /// Set an input: NAME=VALUE (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Blueprints whose providers are searched for orphans (besides those of the recorded
    /// deployments).
    pub blueprints: Vec<PathBuf>,
    /// A YAML file with a `provider:` section (as in a blueprint) to search as well.
    #[arg(long, value_name = "FILE")]
    pub provider_config: Vec<PathBuf>,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete without asking (required off a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only deployments whose name matches (a glob with `*`, repeatable), e.g. `ci-*` when
    /// other teams' deployments share the cloud account or engine.
    #[arg(long = "match", value_name = "GLOB")]
    pub matches: Vec<String>,
    /// Resources younger than this are never orphans (a run may be creating them).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub grace: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Wait up to this long for another run on the same deployment to finish (e.g. 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_lock: Option<std::time::Duration>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s or 5m: {e}"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a blueprint without touching any machine (exit 0 valid, 2 invalid).
    Validate(BlueprintArgs),
    /// Show what `up` would create, change or delete (exit 0 nothing to do, 10 changes pending).
    Plan {
        #[command(flatten)]
        blueprint: BlueprintArgs,
        /// Machines only: do not SSH to existing nodes to see whether Docker or the cluster
        /// need work (fast on large fleets).
        #[arg(long)]
        no_probe: bool,
    },
    /// Create or converge the deployment the blueprint names.
    Up {
        #[command(flatten)]
        bp: BlueprintArgs,
        /// Do not ask before deleting machines (scale-in, orphans).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
        /// The deployment expires this long from now (e.g. 6h); `flotilla gc` deletes it then.
        /// Replaces a recorded expiry; without it a re-run keeps the one recorded.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Push a deployment's expiry out by DURATION (from its current expiry, or from now when it
    /// has none or already passed).
    Extend {
        deployment: String,
        #[arg(value_parser = parse_duration)]
        duration: std::time::Duration,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Delete expired deployments and orphaned resources (flotilla-labelled, no state, older
    /// than the grace period). Exit 0 nothing left to do, 7 something could not be deleted
    /// (retry on the next run), 2 usage.
    Gc(GcArgs),
    /// Health of each node: machine, SSH, Docker and cluster membership.
    Status {
        /// Deployment name (all deployments when omitted).
        deployment: Option<String>,
        /// Machines from the state and the provider only: no SSH to the nodes (fast on large
        /// fleets; Docker and cluster columns read "not probed").
        #[arg(long)]
        no_probe: bool,
    },
    /// The blueprint's outputs for a deployment (plus `kubeconfig` for Kubernetes).
    Outputs { deployment: String },
    /// Serve the engine over HTTP: API (bearer token), Alertmanager webhook, Prometheus metrics.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8750")]
        listen: std::net::SocketAddr,
        /// File holding the API token (created 0600 with a new token when missing);
        /// default `<home>/api-token`.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Requests running longer are answered 408.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15m")]
        request_timeout: std::time::Duration,
        /// Append one JSON line per request (method, route, status, milliseconds) to this file.
        #[arg(long)]
        log_file: Option<std::path::PathBuf>,
        /// Serve HTTPS with `cert.pem`/`key.pem` from this folder (a self-signed pair is made
        /// there, key 0600, when missing; its fingerprint is printed at start).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<std::path::PathBuf>,
        /// A name or address clients use to reach the server, put in the certificate when it
        /// is made (repeatable; localhost and 127.0.0.1 are always in it).
        #[arg(long, value_name = "NAME")]
        tls_name: Vec<String>,
        /// Allow plain HTTP on an address other than loopback (the token then crosses the
        /// network in clear text: only behind a TLS-terminating proxy on the same host).
        #[arg(long)]
        allow_plain_http: bool,
    },
    /// Path of a Kubernetes deployment's admin kubeconfig: `export KUBECONFIG=$(flotilla kubeconfig NAME)`.
    Kubeconfig { deployment: String },
    /// Every container on the deployment's nodes, with the tool that owns it.
    Ps {
        deployment: String,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Stop one container on a node (containers flotilla did not create need --yes).
    Stop(ContainerArgs),
    /// Kill one container on a node (containers flotilla did not create need --yes).
    Kill(ContainerArgs),
    /// Write a deployment (state, SSH key, pinned host keys, kubeconfig) to one 0600 tar archive.
    Export {
        deployment: String,
        /// Archive to write (`-` for stdout).
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
        /// Also the manager's data volumes (a `manager backup`, streamed from its node).
        #[arg(long)]
        with_manager_data: bool,
    },
    /// Take over a deployment from an `export` archive (refuses to replace an existing one).
    Import {
        /// Archive to read (`-` for stdin).
        file: std::path::PathBuf,
        /// Replace an existing deployment of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Open a shell (or run a command) on a node.
    Ssh {
        deployment: String,
        node: String,
        /// Command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Resize groups: GROUP=N... (scale-out creates, installs and joins; scale-in drains, removes, deletes).
    Scale {
        deployment: String,
        /// New group sizes, e.g. workers=5.
        #[arg(required = true, value_name = "GROUP=N")]
        counts: Vec<String>,
        /// Do not ask before deleting machines.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Find unhealthy nodes and replace them (guards: startup timeout, grace, max_unhealthy, quorum).
    Heal {
        deployment: String,
        /// Print the decisions and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep healing every --interval until SIGTERM/SIGINT (the current step finishes first).
        #[arg(long)]
        watch: bool,
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
        interval: std::time::Duration,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Delete the deployment's machines and everything else it created.
    Down {
        deployment: String,
        /// Required: confirms the deletion.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Deployments under the flotilla home.
    List,
    /// The containerized manager: its image, and its app and data containers on a node.
    #[command(subcommand)]
    Manager(ManagerCommand),
    /// A deployment's lock: who holds it, or remove one whose holder is gone.
    #[command(subcommand)]
    Lock(LockCommand),
    /// A deployment's stored state: versions, contents, rollback, moving it to another backend.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Who holds the lock and until when (exit 0 free, 3 held).
    Status { deployment: String },
    /// Remove the lock (its holder's further state writes are refused); asks unless --yes.
    ForceUnlock {
        deployment: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Stored versions, newest first.
    History { deployment: String },
    /// The state as stored (the latest, or --version N), as JSON. Carried key files are not shown.
    Show {
        deployment: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Write version N again as the newest version (under the lock); asks unless --yes.
    Rollback {
        deployment: String,
        #[arg(long, value_name = "N")]
        to: u64,
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Copy the deployment to another backend (verified read-back), under both locks.
    Migrate {
        deployment: String,
        /// Target backend URL (`file`, `postgres://…`).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Delete the state from the source backend once the copy is verified.
        #[arg(long)]
        remove_source: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ManagerCommand {
    /// The manager image.
    #[command(subcommand)]
    Image(ManagerImageCommand),
    /// Install the manager on the deployment (refuses when one exists: see upgrade/recover).
    Install {
        deployment: String,
        /// Image tag (default: the blueprint's `manager.image`, else flotilla/manager:<version>).
        #[arg(long)]
        image: Option<String>,
        /// Restore this `manager backup` archive into the new data container.
        #[arg(long, value_name = "BACKUP")]
        data: Option<std::path::PathBuf>,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Replace the app container with one from another image; the data is kept.
    Upgrade {
        deployment: String,
        /// Image tag (default flotilla/manager:<version>, built when missing).
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Re-create the app container over the existing data container.
    Recover {
        deployment: String,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Stream the manager's data volumes to a tar archive (mode 0600).
    Backup {
        deployment: String,
        /// Archive to write.
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
    },
    /// Where the manager runs and the state of its two containers.
    Status { deployment: String },
    /// Inside the app container: exit 0 when the API answers (the image's HEALTHCHECK).
    #[command(hide = true)]
    Healthcheck {
        #[arg(long, default_value_t = crate::manager::PORT_IN_IMAGE)]
        port: u16,
        #[arg(long, default_value = crate::manager::TLS_DIR)]
        tls_dir: std::path::PathBuf,
    },
    /// Inside the app container: the fingerprint of the API's TLS certificate.
    #[command(hide = true)]
    TlsFingerprint {
        #[arg(long, default_value = crate::manager::TLS_DIR)]
        tls_dir: std::path::PathBuf,
    },
    /// Inside a one-off container: seed the data volume from a tar on stdin.
    #[command(hide = true)]
    InitData,
    /// Inside a one-off container: both data volumes as a tar on stdout.
    #[command(hide = true)]
    DumpData,
    /// Inside a one-off container: restore a `dump-data` tar from stdin.
    #[command(hide = true)]
    RestoreData,
}

#[derive(Debug, Subcommand)]
pub enum ManagerImageCommand {
    /// Build the manager image on the local Docker engine from this flotilla binary.
    Build {
        /// Tag (default flotilla/manager:<version>).
        #[arg(long)]
        tag: Option<String>,
    },
}

/// One container on one node of a deployment (`stop`, `kill`).
#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    pub deployment: String,
    pub node: String,
    /// Container name or ID prefix.
    pub container: String,
    /// Also for containers flotilla did not create.
    #[arg(long, short = 'y')]
    pub yes: bool,
}
