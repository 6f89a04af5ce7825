//! `flotilla manager install|upgrade|recover|backup|status` on a deployment.

use super::image::{self, default_tag};
use super::remote::{self, ContainerState};
use super::{ManagerError, DATA_CONTAINER};
use crate::blueprint::{Blueprint, MANAGER_PORT};
use crate::error::{Error, Result};
use crate::ssh::{SshPool, Target};
use crate::state::{Home, ManagerRecord, State};
use flotilla_provider_core::Role;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct InstallOptions {
    /// Image tag (default: the blueprint's `manager.image`, else `flotilla/manager:<version>`).
    pub image: Option<String>,
    /// A `manager backup` archive to restore into the new data container instead of seeding it.
    pub data: Option<PathBuf>,
    pub wait_lock: Option<Duration>,
}

#[derive(Debug, serde::Serialize)]
pub struct ManagerReport {
    pub deployment: String,
    pub node: String,
    /// `installed`, `upgraded`, `recovered`, `unchanged`, `backed-up`, `status`.
    pub action: String,
    pub url: Option<String>,
    pub image: String,
    pub image_shipped: bool,
    /// Where the operator's copy of the API token is (never the token itself).
    pub token_file: String,
    pub data_container: ContainerState,
    pub app_container: ContainerState,
    /// How long the API took to answer after (re)start.
    pub answered_after: Option<String>,
    /// `backup`: the archive written and its size.
    pub file: Option<String>,
    pub bytes: Option<u64>,
    /// The API's certificate (`sha256:…`), pinned by every client of this deployment.
    pub tls_fingerprint: Option<String>,
    /// `status`: what `GET /healthz` from this machine answered (over pinned TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// The operator's copy of the manager's API token.
pub fn token_file(home: &Home, deployment: &str) -> Result<PathBuf> {
    Ok(home.deployment_dir(deployment)?.join("manager-token"))
}

struct Opened {
    state: State,
    bp: Blueprint,
    pool: Arc<SshPool>,
    targets: Vec<Target>,
}

fn open(home: &Home, name: &str) -> Result<Opened> {
    let state = home.load_existing(name)?;
    let bp = crate::engine::effective_blueprint(&state)?;
    let dir = home.deployment_dir(name)?;
    let (pool, targets) =
        crate::engine::nodes::pool_for_recorded(&bp, &state, &dir, Duration::from_secs(30), None)?;
    Ok(Opened {
        state,
        bp,
        pool,
        targets,
    })
}

/// The node that hosts (or will host) the manager: the recorded one while it exists, else the
/// first node of `manager.group` (default: the first manager-role group, else the first group).
pub fn host_node(state: &State, bp: &Blueprint) -> Result<String> {
    if let Some(m) = &state.manager {
        if state.nodes.contains_key(&m.node) {
            return Ok(m.node.clone());
        }
    }
    let group = bp
        .manager
        .as_ref()
        .and_then(|m| m.group.clone())
        .or_else(|| {
            bp.groups
                .iter()
                .find(|g| g.role == Role::Manager)
                .or(bp.groups.first())
                .map(|g| g.name.clone())
        })
        .ok_or_else(|| Error::Usage("the blueprint has no groups".into()))?;
    state
        .nodes
        .values()
        .filter(|r| r.group == group && r.ssh_address().is_some())
        .min_by_key(|r| (r.name.len(), r.name.clone()))
        .map(|r| r.name.clone())
        .ok_or_else(|| {
            Error::Usage(format!(
                "group `{group}` has no node with an address to run the manager on; `flotilla up` first"
            ))
        })
}

fn target<'a>(targets: &'a [Target], node: &str) -> Result<&'a Target> {
    targets
        .iter()
        .find(|t| t.node == node)
        .ok_or_else(|| Error::Other(format!("node {node} has no SSH address in the state")))
}

/// The image to use and its local ID; the default tag is (re)built when missing or made from
/// another binary than the running one, another tag must already be on the local engine.
async fn local_image(docker: &bollard::Docker, tag: &str) -> Result<String> {
    if tag == default_tag() {
        let (_, sum) = image::running_binary()?;
        if let Some(id) = image::current_image_id(docker, tag, &sum).await {
            return Ok(id);
        }
        let built = image::build(docker, tag).await?;
        return Ok(built.id);
    }
    if let Some(id) = image::local_image_id(docker, tag).await {
        return Ok(id);
    }
    Err(Error::Usage(format!(
        "image {tag} is not on the local Docker engine; build it with `flotilla manager image build --tag {tag}`"
    )))
}

/// Where the API is published on its node: the recorded or configured address, else the
/// node's private address (never every interface).
fn listen_of(state: &State, bp: Option<&Blueprint>, node: &str) -> Result<std::net::IpAddr> {
    state
        .manager
        .as_ref()
        .filter(|m| m.node == node)
        .and_then(|m| m.listen)
        .or(bp.and_then(|b| b.manager.as_ref()).and_then(|m| m.listen))
        .or(state
            .nodes
            .get(node)
            .and_then(|r| r.private_ip.or(r.public_ip)))
        .ok_or_else(|| {
            Error::Other(format!(
                "node {node} has no address to publish the manager's API on"
            ))
        })
}

fn url(state: &State, node: &str, port: u16) -> Option<String> {
    let listen = listen_of(state, None, node)
        .ok()
        // Published on every interface (`listen: 0.0.0.0`): reach it at the node's address.
        .filter(|ip| !ip.is_unspecified())
        .or_else(|| state.nodes.get(node).and_then(|r| r.ssh_address()))?;
    Some(match listen {
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
        v4 => format!("https://{v4}:{port}"),
    })
}

/// `GET /healthz` from this machine, pinned to the recorded certificate.
async fn probe_api(state: &State, m: &ManagerRecord) -> String {
    let (Some(url), Some(fp)) = (url(state, &m.node, m.port), &m.tls_fingerprint) else {
        return "no certificate recorded (installed by an older flotilla: `flotilla manager upgrade` records it)".into();
    };
    let client = match crate::serve::tls::pinned_client(fp, Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match client.get(format!("{url}/healthz")).send().await {
        Ok(r) if r.status().is_success() => "answers (TLS certificate as recorded)".into(),
        Ok(r) => format!("answered HTTP {}", r.status()),
        Err(e) => crate::util::error_chain(&e),
    }
}

fn port_of(state: &State, bp: &Blueprint) -> u16 {
    state
        .manager
        .as_ref()
        .map(|m| m.port)
        .or(bp.manager.as_ref().map(|m| m.port))
        .unwrap_or(MANAGER_PORT)
}

/// A tar holding `api-token` and `export.tar`, for `manager init-data` in the new container.
fn seed_archive(home: &Home, name: &str, token: &str) -> Result<Vec<u8>> {
    let export = crate::engine::transfer::export(home, name)?;
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in [
        ("api-token", format!("{token}\n").into_bytes()),
        ("export.tar", export),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, path, body.as_slice())
            .map_err(|e| Error::Other(format!("building the seed: {e}")))?;
    }
    b.into_inner()
        .map_err(|e| Error::Other(format!("building the seed: {e}")))
}

fn once(bytes: Vec<u8>) -> crate::ssh::ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))
    }))
}

/// The API token inside a backup archive (`data/api-token`), to keep the operator's copy in step.
fn token_in_backup(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    let f =
        std::fs::File::open(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(f));
    let bad = |e: std::io::Error| {
        Error::Usage(format!("{} is not a manager backup: {e}", path.display()))
    };
    for entry in a.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.path().map_err(bad)?.as_os_str() == "data/api-token" {
            let mut t = String::new();
            entry.read_to_string(&mut t).map_err(bad)?;
            return Ok(Some(t.trim().to_string()));
        }
    }
    Ok(None)
}

/// Installs the manager on the deployment's host node. Used by `manager install` (which takes
/// the lock) and by `up` (which holds it).
pub async fn install_locked(
    home: &Home,
    state: &mut State,
    bp: &Blueprint,
    pool: &SshPool,
    targets: &[Target],
    opts: &InstallOptions,
) -> Result<ManagerReport> {
    let name = state.deployment.clone();
    let node = host_node(state, bp)?;
    let t = target(targets, &node)?;
    let (data, _) = remote::inspect(pool, t).await?;
    if data.present {
        return Err(ManagerError::Refused(format!(
            "a manager already exists on {node} (its data container {DATA_CONTAINER} is there); `flotilla manager upgrade {name}` changes its image, `flotilla manager recover {name}` re-creates its app container, `flotilla manager backup {name}` saves its data"
        ))
        .into());
    }
    let tag = opts
        .image
        .clone()
        .or(bp.manager.as_ref().and_then(|m| m.image.clone()))
        .unwrap_or_else(default_tag);
    let port = port_of(state, bp);
    let listen = listen_of(state, Some(bp), &node)?;
    let docker = image::local_docker()?;
    let local_id = local_image(&docker, &tag).await?;
    let shipped = remote::ship_image(pool, t, &docker, &tag, &local_id).await?;
    remote::create_data(pool, t, &name, &tag).await?;
    let tokens = token_file(home, &name)?;
    // From here a failure removes both containers again, so a re-run starts clean.
    let seeded: Result<(Duration, String)> = async {
        match &opts.data {
            Some(backup) => {
                let token = token_in_backup(backup)?;
                let f = tokio::fs::File::open(backup)
                    .await
                    .map_err(|e| Error::Usage(format!("{}: {e}", backup.display())))?;
                let stream = tokio_util::io::ReaderStream::new(f);
                remote::one_off_with_input(pool, t, &name, &tag, "restore-data", Box::pin(stream))
                    .await?;
                if let Some(token) = token {
                    crate::state::write_atomic(&tokens, format!("{token}\n").as_bytes())?;
                }
            }
            None => {
                let (token, _) = crate::serve::auth::load_or_create(&tokens)
                    .map_err(|e| Error::Other(e.to_string()))?;
                let seed = seed_archive(home, &name, &token)?;
                remote::one_off_with_input(pool, t, &name, &tag, "init-data", once(seed)).await?;
            }
        }
        remote::run_app(pool, t, &name, &tag, port, listen).await?;
        let answered = remote::wait_healthy(pool, t).await?;
        Ok((answered, remote::tls_fingerprint(pool, t).await?))
    }
    .await;
    let (answered, fingerprint) = match seeded {
        Ok(d) => d,
        Err(e) => {
            let _ = pool
                .run(
                    t,
                    "undo the install",
                    &remote::remove_all_script(&name),
                    Some(remote::DOCKER_CLI_TIMEOUT),
                )
                .await;
            return Err(e);
        }
    };
    let (data, app) = remote::inspect(pool, t).await?;
    state.manager = Some(ManagerRecord {
        node: node.clone(),
        port,
        image: tag.clone(),
        image_id: app.image_id.clone(),
        installed_at: crate::util::now_rfc3339(),
        upgraded_at: None,
        listen: Some(listen),
        tls_fingerprint: Some(fingerprint),
    });
    home.save(state)?;
    Ok(ManagerReport {
        deployment: name.clone(),
        url: url(state, &node, port),
        node,
        action: "installed".into(),
        image: tag,
        image_shipped: shipped,
        token_file: tokens.display().to_string(),
        data_container: data,
        app_container: app,
        answered_after: Some(crate::util::human_duration(answered)),
        file: None,
        bytes: None,
        tls_fingerprint: state
            .manager
            .as_ref()
            .and_then(|m| m.tls_fingerprint.clone()),
        api: None,
    })
}

pub async fn install(home: &Home, name: &str, opts: &InstallOptions) -> Result<ManagerReport> {
    let _lock = crate::engine::lock_existing(home, name, "manager install", opts.wait_lock)?;
    let mut o = open(home, name)?;
    let r = install_locked(home, &mut o.state, &o.bp, &o.pool, &o.targets, opts).await;
    o.pool.close_all().await;
    if r.is_ok() {
        home.save_final(&o.state)?; // `manager install` is a run of its own: keep its end
    }
    r
}

/// The recorded manager (or a clear refusal when there is none).
fn recorded(state: &State) -> Result<ManagerRecord> {
    state.manager.clone().ok_or_else(|| {
        ManagerError::Refused(format!(
            "deployment `{}` has no manager; `flotilla manager install {}` installs one",
            state.deployment, state.deployment
        ))
        .into()
    })
}

/// The recorded manager, its node, and both containers as they are now. Refused when the data
/// container is gone: `consequence` says what that means for the operation asked for.
async fn with_data<'t>(
    state: &State,
    pool: &SshPool,
    targets: &'t [Target],
    consequence: &str,
) -> Result<(ManagerRecord, &'t Target, ContainerState, ContainerState)> {
    let m = recorded(state)?;
    let t = target(targets, &m.node)?;
    let (data, app) = remote::inspect(pool, t).await?;
    if !data.present {
        return Err(ManagerError::Refused(format!(
            "{}: the data container {DATA_CONTAINER} is gone; {consequence}",
            m.node
        ))
        .into());
    }
    Ok((m, t, data, app))
}

fn report(
    home: &Home,
    state: &State,
    m: &ManagerRecord,
    action: &str,
    data: ContainerState,
    app: ContainerState,
) -> ManagerReport {
    ManagerReport {
        deployment: state.deployment.clone(),
        node: m.node.clone(),
        action: action.into(),
        url: url(state, &m.node, m.port),
        image: m.image.clone(),
        image_shipped: false,
        // The state's name was checked when it was read.
        token_file: token_file(home, &state.deployment)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        data_container: data,
        app_container: app,
        answered_after: None,
        file: None,
        bytes: None,
        tls_fingerprint: m.tls_fingerprint.clone(),
        api: None,
    }
}

/// Replaces the app container with one from another image; the data container is untouched.
/// If the new one does not answer, the old image is started again.
pub async fn upgrade(home: &Home, name: &str, opts: &InstallOptions) -> Result<ManagerReport> {
    let _lock = crate::engine::lock_existing(home, name, "manager upgrade", opts.wait_lock)?;
    let o = open(home, name)?;
    let r = upgrade_opened(home, o.state, &o.pool, &o.targets, opts).await;
    o.pool.close_all().await;
    r
}

async fn upgrade_opened(
    home: &Home,
    mut state: State,
    pool: &SshPool,
    targets: &[Target],
    opts: &InstallOptions,
) -> Result<ManagerReport> {
    let (m, t, data, app) = with_data(
        &state,
        pool,
        targets,
        &format!(
            "there is nothing to upgrade; `flotilla manager install {} --data BACKUP` restores from a backup",
            state.deployment
        ),
    )
    .await?;
    let tag = opts.image.clone().unwrap_or_else(default_tag);
    let docker = image::local_docker()?;
    let local_id = local_image(&docker, &tag).await?;
    if app.present && app.status == "running" && app.image_id == local_id {
        return Ok(report(home, &state, &m, "unchanged", data, app));
    }
    let shipped = remote::ship_image(pool, t, &docker, &tag, &local_id).await?;
    let listen = listen_of(&state, None, &m.node)?;
    remote::remove_app(pool, t).await?;
    remote::run_app(pool, t, &state.deployment, &tag, m.port, listen).await?;
    let answered = match remote::wait_healthy(pool, t).await {
        Ok(d) => d,
        Err(e) => {
            remote::remove_app(pool, t).await?;
            remote::run_app(pool, t, &state.deployment, &m.image, m.port, listen).await?;
            let back = remote::wait_healthy(pool, t).await;
            return Err(Error::Other(format!(
                "{e}; the app container was started again from {} ({})",
                m.image,
                match back {
                    Ok(_) => "it answers".to_string(),
                    Err(e2) => format!("it does not answer either: {e2}"),
                }
            )));
        }
    };
    let (data, app) = remote::inspect(pool, t).await?;
    let mut rec = m.clone();
    rec.image = tag;
    rec.image_id = app.image_id.clone();
    rec.upgraded_at = Some(crate::util::now_rfc3339());
    rec.listen = Some(listen);
    rec.tls_fingerprint = Some(remote::tls_fingerprint(pool, t).await?);
    state.manager = Some(rec.clone());
    home.save_final(&state)?;
    let mut r = report(home, &state, &rec, "upgraded", data, app);
    r.image_shipped = shipped;
    r.answered_after = Some(crate::util::human_duration(answered));
    Ok(r)
}

/// Re-creates the app container over the existing data container (after `docker kill`, a
/// removed container, a node reboot with the container gone). A running, answering app is left
/// alone.
pub async fn recover(
    home: &Home,
    name: &str,
    wait_lock: Option<Duration>,
) -> Result<ManagerReport> {
    let _lock = crate::engine::lock_existing(home, name, "manager recover", wait_lock)?;
    let o = open(home, name)?;
    let r = recover_opened(home, &o.state, &o.pool, &o.targets).await;
    o.pool.close_all().await;
    r
}

async fn recover_opened(
    home: &Home,
    state: &State,
    pool: &SshPool,
    targets: &[Target],
) -> Result<ManagerReport> {
    let (m, t, data, app) = with_data(
        state,
        pool,
        targets,
        &format!(
            "there is nothing to recover; `flotilla manager install {} --data BACKUP` restores from a backup",
            state.deployment
        ),
    )
    .await?;
    if app.status == "running" && remote::wait_healthy_once(pool, t).await {
        return Ok(report(home, state, &m, "unchanged", data, app));
    }
    let mut shipped = false;
    if remote::image_id(pool, t, &m.image).await?.is_none() {
        let docker = image::local_docker()?;
        let local_id = local_image(&docker, &m.image).await?;
        shipped = remote::ship_image(pool, t, &docker, &m.image, &local_id).await?;
    }
    remote::remove_app(pool, t).await?;
    let listen = listen_of(state, None, &m.node)?;
    remote::run_app(pool, t, &state.deployment, &m.image, m.port, listen).await?;
    let answered = remote::wait_healthy(pool, t).await?;
    let (data, app) = remote::inspect(pool, t).await?;
    let mut r = report(home, state, &m, "recovered", data, app);
    r.image_shipped = shipped;
    r.answered_after = Some(crate::util::human_duration(answered));
    Ok(r)
}

/// Streams both data volumes into `file` (0600: it holds the deployment's SSH key and the API
/// token), written to a temporary name first so a failed backup leaves no half file.
pub async fn backup(home: &Home, name: &str, file: &Path) -> Result<ManagerReport> {
    let o = open(home, name)?;
    let r = backup_opened(home, &o.state, &o.pool, &o.targets, file).await;
    o.pool.close_all().await;
    r
}

async fn backup_opened(
    home: &Home,
    state: &State,
    pool: &SshPool,
    targets: &[Target],
    file: &Path,
) -> Result<ManagerReport> {
    use std::os::unix::fs::PermissionsExt;
    let (m, t, data, app) = with_data(state, pool, targets, "there is nothing to back up").await?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A new file (O_EXCL, 0600: it holds the SSH key and the API token), renamed into place
    // once complete; removed when the backup fails.
    let (std_file, tmp) = tempfile::Builder::new()
        .prefix(".flotilla-backup.partial.")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?
        .into_parts();
    let mut out = tokio::fs::File::from_std(std_file);
    let dumped = remote::dump_data(pool, t, &state.deployment, &m.image, &mut out).await;
    let synced = {
        use tokio::io::AsyncWriteExt;
        out.flush().await.and(out.sync_all().await)
    };
    drop(out);
    dumped?;
    synced.map_err(|e| Error::Other(format!("{}: {e}", tmp.display())))?;
    tmp.persist(file)
        .map_err(|e| Error::Other(format!("{}: {}", file.display(), e.error)))?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).ok();
    let mut r = report(home, state, &m, "backed-up", data, app);
    r.file = Some(file.display().to_string());
    r.bytes = bytes;
    Ok(r)
}

pub async fn status(home: &Home, name: &str) -> Result<ManagerReport> {
    let o = open(home, name)?;
    let m = recorded(&o.state)?;
    let t = target(&o.targets, &m.node)?;
    let r = remote::inspect(&o.pool, t).await;
    o.pool.close_all().await;
    let (data, app) = r?;
    let mut r = report(home, &o.state, &m, "status", data, app);
    r.api = Some(probe_api(&o.state, &m).await);
    Ok(r)
}

/// `heal`'s check of the manager: an app container that is not running (killed, removed) is
/// re-created over the data container from the recorded image, when the node still has it.
/// Returns what was done, or None when the app answers.
pub async fn revive(pool: &SshPool, targets: &[Target], state: &State) -> Result<Option<String>> {
    let Some(m) = &state.manager else {
        return Ok(None);
    };
    let t = target(targets, &m.node)?;
    let (data, app) = remote::inspect(pool, t).await?;
    if !data.present {
        return Ok(Some(format!(
            "the data container on {} is gone: `flotilla manager install {} --data BACKUP` restores a backup",
            m.node, state.deployment
        )));
    }
    if app.status == "running" && remote::wait_healthy_once(pool, t).await {
        return Ok(None);
    }
    if remote::image_id(pool, t, &m.image).await?.is_none() {
        return Err(ManagerError::Node {
            node: m.node.clone(),
            message: format!(
                "the manager image {} is gone from the node; `flotilla manager recover {}` ships it again",
                m.image, state.deployment
            ),
        }
        .into());
    }
    remote::remove_app(pool, t).await?;
    let listen = listen_of(state, None, &m.node)?;
    remote::run_app(pool, t, &state.deployment, &m.image, m.port, listen).await?;
    remote::wait_healthy(pool, t).await?;
    Ok(Some("recovered".into()))
}
