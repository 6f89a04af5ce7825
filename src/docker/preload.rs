//! Image archives (`docker save` output) loaded onto nodes before they join the cluster, so that
//! nodes without registry access — and replacements made by `heal` or `scale` — can run the
//! blueprint's services at once (the air-gapped install of k3s and RKE works the same way).

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("cannot read the image archive {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a `docker save` archive: {why}")]
    NotAnArchive { path: String, why: String },
}

/// One archive and the image tags it carries (from its `manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    pub path: PathBuf,
    pub tags: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ManifestEntry {
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

/// Reads the tags of a `docker save` archive (plain tar; gzip is not what `docker save` writes).
pub fn read_archive(path: &Path) -> Result<ImageArchive, PreloadError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| PreloadError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive.entries().map_err(|source| PreloadError::Read {
        path: shown.clone(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| PreloadError::NotAnArchive {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        let is_manifest = entry
            .path()
            .is_ok_and(|p| p.as_os_str() == "manifest.json" || p.as_os_str() == "./manifest.json");
        if !is_manifest {
            continue;
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| PreloadError::NotAnArchive {
                path: shown.clone(),
                why: format!("manifest.json: {e}"),
            })?;
        let manifest: Vec<ManifestEntry> =
            serde_json::from_str(&text).map_err(|e| PreloadError::NotAnArchive {
                path: shown.clone(),
                why: format!("manifest.json: {e}"),
            })?;
        let tags: Vec<String> = manifest
            .into_iter()
            .flat_map(|m| m.repo_tags.unwrap_or_default())
            .collect();
        if tags.is_empty() {
            return Err(PreloadError::NotAnArchive {
                path: shown,
                why: "its images have no tags (save them by name: `docker save repo:tag`)".into(),
            });
        }
        return Ok(ImageArchive {
            path: path.to_path_buf(),
            tags,
        });
    }
    Err(PreloadError::NotAnArchive {
        path: shown,
        why: "there is no manifest.json in it".into(),
    })
}

/// A shell test that succeeds when every tag is already present on the node.
pub fn present_check(tags: &[String]) -> String {
    let quoted: Vec<String> = tags.iter().map(|t| crate::ssh::shell_quote(t)).collect();
    format!("docker image inspect {} >/dev/null 2>&1", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(manifest: Option<&str>) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp");
        let mut b = tar::Builder::new(std::fs::File::create(f.path()).expect("create"));
        if let Some(m) = manifest {
            let mut h = tar::Header::new_gnu();
            h.set_size(m.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "manifest.json", m.as_bytes())
                .expect("append");
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "layer.tar", &b"xx"[..])
            .expect("append");
        b.finish().expect("finish");
        f
    }

    #[test]
    fn tags_come_from_the_manifest() {
        let f = archive_with(Some(
            r#"[{"Config":"c.json","RepoTags":["web:1","web:latest"],"Layers":["layer.tar"]}]"#,
        ));
        let a = read_archive(f.path()).expect("archive");
        assert_eq!(a.tags, vec!["web:1", "web:latest"]);
        assert_eq!(
            present_check(&a.tags),
            "docker image inspect 'web:1' 'web:latest' >/dev/null 2>&1"
        );
    }

    #[test]
    fn untagged_or_manifestless_archives_are_refused_with_the_reason() {
        let f = archive_with(Some(r#"[{"Config":"c.json","RepoTags":null}]"#));
        let e = read_archive(f.path()).expect_err("untagged").to_string();
        assert!(e.contains("no tags"), "{e}");
        let f = archive_with(None);
        let e = read_archive(f.path()).expect_err("no manifest").to_string();
        assert!(e.contains("no manifest.json"), "{e}");
        let e = read_archive(Path::new("/nonexistent/images.tar"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
