//! Rendering the per-distribution install script.

use crate::blueprint::{DockerInstallConfig, InstallMethod};
use crate::state::OsInfo;
use std::path::Path;
use thiserror::Error;

/// Where uploaded offline packages land on the node.
pub const OFFLINE_DIR: &str = "/var/cache/flotilla/packages";

const COMMON: &str = include_str!("../../templates/docker-install/common.sh");
const START: &str = include_str!("../../templates/docker-install/start.sh");
pub const RETRY: &str = include_str!("../../templates/retry.sh");
const DEBIAN: &str = include_str!("../../templates/docker-install/debian.sh");
const RHEL: &str = include_str!("../../templates/docker-install/rhel.sh");
const ALPINE: &str = include_str!("../../templates/docker-install/alpine.sh");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    Rhel,
    Alpine,
}

impl Family {
    /// Picks the template from /etc/os-release's ID and ID_LIKE.
    pub fn detect(os: &OsInfo) -> Option<Self> {
        let ids = std::iter::once(os.id.as_str()).chain(os.id_like.iter().map(String::as_str));
        for id in ids {
            match id {
                "debian" | "ubuntu" | "raspbian" | "linuxmint" => return Some(Family::Debian),
                "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" => {
                    return Some(Family::Rhel)
                }
                "alpine" => return Some(Family::Alpine),
                _ => {}
            }
        }
        None
    }

    fn template(self) -> (&'static str, &'static str) {
        match self {
            Family::Debian => ("debian.sh", DEBIAN),
            Family::Rhel => ("rhel.sh", RHEL),
            Family::Alpine => ("alpine.sh", ALPINE),
        }
    }
}

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("unsupported operating system `{0}`: flotilla installs Docker on Debian/Ubuntu, RHEL-family and Alpine")]
    UnsupportedOs(String),
    #[error("docker install template: {0}")]
    Template(String),
    #[error("docker.packages {path}: {message}")]
    Packages { path: String, message: String },
}

fn method_name(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Distro => "distro",
        InstallMethod::DockerCe => "docker-ce",
        InstallMethod::Offline => "offline",
        InstallMethod::Preinstalled => "preinstalled",
    }
}

/// The complete shell script that installs (if needed), configures and starts Docker.
pub fn install_script(family: Family, cfg: &DockerInstallConfig) -> Result<String, InstallError> {
    let (name, body) = family.template();
    let mut ctx = tera::Context::new();
    ctx.insert("method", method_name(cfg.method));
    ctx.insert("version", &cfg.version);
    ctx.insert("proxy", &cfg.proxy);
    ctx.insert("apt_proxy", &cfg.apt_proxy);
    ctx.insert("offline_dir", OFFLINE_DIR);
    let daemon_json = cfg
        .daemon
        .as_ref()
        .map(|d| serde_json::to_string_pretty(d).unwrap_or_default());
    ctx.insert("daemon_json", &daemon_json);
    ctx.insert("systemd_proxy", &systemd_proxy(&cfg.proxy));
    let templates = [
        ("retry.sh", RETRY),
        ("common.sh", COMMON),
        ("start.sh", START),
        (name, body),
    ];
    crate::template::render_script(&templates, name, &ctx).map_err(InstallError::Template)
}

/// The proxy settings as systemd reads an `Environment="…"` value: `%` starts a specifier and
/// `\` an escape there (the values were already checked to hold no quote or control character).
fn systemd_proxy(p: &crate::blueprint::ProxyConfig) -> crate::blueprint::ProxyConfig {
    let esc = |v: &Option<String>| {
        v.as_ref()
            .map(|s| s.replace('\\', "\\\\").replace('%', "%%"))
    };
    crate::blueprint::ProxyConfig {
        http: esc(&p.http),
        https: esc(&p.https),
        no_proxy: esc(&p.no_proxy),
    }
}

/// The offline package set as an uncompressed tar stream (built from a folder, or a tarball read
/// as is), to be unpacked into `OFFLINE_DIR` on the node.
pub fn offline_bundle(path: &Path) -> Result<Vec<u8>, InstallError> {
    let err = |message: String| InstallError::Packages {
        path: path.display().to_string(),
        message,
    };
    if path.is_dir() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut count = 0;
        let entries = std::fs::read_dir(path).map_err(|e| err(e.to_string()))?;
        for e in entries.flatten() {
            let p = e.path();
            let is_pkg = p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "deb" | "rpm" | "apk"));
            if is_pkg {
                builder
                    .append_path_with_name(&p, e.file_name())
                    .map_err(|e| err(e.to_string()))?;
                count += 1;
            }
        }
        if count == 0 {
            return Err(err("the folder holds no .deb, .rpm or .apk files".into()));
        }
        builder.into_inner().map_err(|e| err(e.to_string()))
    } else if path.is_file() {
        std::fs::read(path).map_err(|e| err(e.to_string()))
    } else {
        Err(err("no such file or folder".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::ProxyConfig;

    fn os(id: &str, like: &[&str]) -> OsInfo {
        OsInfo {
            id: id.into(),
            id_like: like.iter().map(|s| s.to_string()).collect(),
            version_id: String::new(),
            pretty_name: id.into(),
            systemd: false,
        }
    }

    #[test]
    fn families_follow_os_release() {
        assert_eq!(Family::detect(&os("debian", &[])), Some(Family::Debian));
        assert_eq!(
            Family::detect(&os("ubuntu", &["debian"])),
            Some(Family::Debian)
        );
        assert_eq!(
            Family::detect(&os("rocky", &["rhel", "centos", "fedora"])),
            Some(Family::Rhel)
        );
        assert_eq!(Family::detect(&os("alpine", &[])), Some(Family::Alpine));
        assert_eq!(Family::detect(&os("arch", &[])), None);
    }

    #[test]
    fn every_template_renders_for_every_method() {
        for family in [Family::Debian, Family::Rhel, Family::Alpine] {
            for method in [
                InstallMethod::Distro,
                InstallMethod::DockerCe,
                InstallMethod::Offline,
                InstallMethod::Preinstalled,
            ] {
                let cfg = DockerInstallConfig {
                    method,
                    version: Some("1.2.3".into()),
                    proxy: ProxyConfig {
                        http: Some("http://10.0.0.1:3128".into()),
                        https: None,
                        no_proxy: Some("localhost".into()),
                    },
                    daemon: Some(serde_json::Map::from_iter([(
                        "log-driver".to_string(),
                        "json-file".into(),
                    )])),
                    ..Default::default()
                };
                let s = install_script(family, &cfg).expect("renders");
                crate::util::assert_sh_syntax(&s);
                assert!(
                    s.contains("http_proxy='http://10.0.0.1:3128'"),
                    "{family:?} {method:?}"
                );
                assert!(s.contains("\"log-driver\": \"json-file\""));
                assert!(
                    s.contains("docker_server=$(docker version --format '{{.Server.Version}}')")
                );
            }
        }
    }

    #[test]
    fn hostile_values_stay_one_shell_word() {
        let hostile = "x'; touch /tmp/flotilla-pwned; echo '$(id)`id`\\";
        let cfg = DockerInstallConfig {
            method: InstallMethod::DockerCe,
            version: Some(hostile.into()),
            proxy: ProxyConfig {
                http: Some(hostile.into()),
                https: None,
                no_proxy: None,
            },
            ..Default::default()
        };
        for family in [Family::Debian, Family::Rhel, Family::Alpine] {
            let s = install_script(family, &cfg).expect("renders");
            crate::util::assert_sh_syntax(&s);
            // The export line, run on its own, sets the variable to exactly the value.
            let line = s
                .lines()
                .find(|l| l.starts_with("export http_proxy="))
                .expect("export line");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{line}\nprintf %s \"$http_proxy\""))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
        }
    }

    #[test]
    fn debian_distro_uses_docker_io_without_recommends() {
        let s = install_script(Family::Debian, &DockerInstallConfig::default()).expect("renders");
        assert!(s.contains("apt-get install -y -q --no-install-recommends docker.io"));
        assert!(!s.contains("download.docker.com"));
        let ce = install_script(
            Family::Debian,
            &DockerInstallConfig {
                method: InstallMethod::DockerCe,
                version: Some("5:27.3.1-1~debian.12~bookworm".into()),
                ..Default::default()
            },
        )
        .expect("renders");
        assert!(ce.contains("docker-ce='5:27.3.1-1~debian.12~bookworm'"));
        let apt = install_script(
            Family::Debian,
            &DockerInstallConfig {
                apt_proxy: Some("http://10.198.0.1:3142".into()),
                ..Default::default()
            },
        )
        .expect("renders");
        assert!(apt.contains(
            r#"printf 'Acquire::http::Proxy "%s";\n' 'http://10.198.0.1:3142' > /etc/apt"#
        ));
    }

    #[test]
    fn offline_bundle_packs_only_packages() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("a.deb"), b"x").expect("w");
        std::fs::write(tmp.path().join("notes.txt"), b"x").expect("w");
        let bytes = offline_bundle(tmp.path()).expect("bundle");
        let mut ar = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = ar
            .entries()
            .expect("e")
            .map(|e| e.expect("e").path().expect("p").display().to_string())
            .collect();
        assert_eq!(names, vec!["a.deb"]);
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(offline_bundle(empty.path()).is_err());
    }
}
