//! Where credentials come from (the way OpenStack users expect) and Keystone v3 tokens.
//!
//! Sources, first match wins: the blueprint's `cloud` or `OS_CLOUD` looked up in clouds.yaml
//! (`OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
//! `/etc/openstack/clouds.yaml`), else the `OS_*` environment. Password auth scoped to a project
//! (domains by name or id) and application credentials are supported.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuthParams {
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub password: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub domain_name: Option<String>,
    pub application_credential_id: Option<String>,
    pub application_credential_secret: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudConfig {
    /// Where the settings came from, for error messages.
    pub source: String,
    pub auth: AuthParams,
    pub region: Option<String>,
    pub interface: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, CloudEntry>,
}

#[derive(Debug, Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth: AuthParams,
    region_name: Option<String>,
    interface: Option<String>,
    #[allow(dead_code)]
    auth_type: Option<String>,
}

/// clouds.yaml search path, in the order openstacksdk uses.
pub fn clouds_yaml_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(p));
    }
    v.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = std::env::var_os("HOME") {
        v.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
    }
    v.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    v
}

/// Resolves the credentials to use: a named cloud, or the OS_* environment.
pub fn resolve(
    cloud: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    paths: &[PathBuf],
) -> Result<CloudConfig, String> {
    let cloud = cloud.map(String::from).or_else(|| env("OS_CLOUD"));
    if let Some(name) = cloud {
        for p in paths {
            let Ok(text) = std::fs::read_to_string(p) else {
                continue;
            };
            let file: CloudsFile =
                serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            if let Some(c) = file.clouds.get(&name) {
                return Ok(CloudConfig {
                    source: format!("cloud `{name}` in {}", p.display()),
                    auth: c.auth.clone(),
                    region: c.region_name.clone(),
                    interface: c.interface.clone(),
                });
            }
        }
        let searched: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "cloud `{name}` is not in any clouds.yaml (searched {})",
            searched.join(", ")
        ));
    }
    let auth = AuthParams {
        auth_url: env("OS_AUTH_URL"),
        username: env("OS_USERNAME"),
        user_id: env("OS_USER_ID"),
        password: env("OS_PASSWORD"),
        project_name: env("OS_PROJECT_NAME").or_else(|| env("OS_TENANT_NAME")),
        project_id: env("OS_PROJECT_ID").or_else(|| env("OS_TENANT_ID")),
        user_domain_name: env("OS_USER_DOMAIN_NAME"),
        user_domain_id: env("OS_USER_DOMAIN_ID"),
        project_domain_name: env("OS_PROJECT_DOMAIN_NAME"),
        project_domain_id: env("OS_PROJECT_DOMAIN_ID"),
        domain_name: env("OS_DOMAIN_NAME"),
        application_credential_id: env("OS_APPLICATION_CREDENTIAL_ID"),
        application_credential_secret: env("OS_APPLICATION_CREDENTIAL_SECRET"),
    };
    if auth.auth_url.is_none() {
        return Err("no OpenStack credentials: set provider.cloud / OS_CLOUD (a clouds.yaml entry) or the OS_* variables (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, ...)".into());
    }
    Ok(CloudConfig {
        source: "the OS_* environment".into(),
        auth,
        region: env("OS_REGION_NAME"),
        interface: env("OS_INTERFACE"),
    })
}

/// The Keystone v3 token request body.
pub fn token_request(a: &AuthParams) -> Result<serde_json::Value, String> {
    use serde_json::json;
    if let (Some(id), Some(secret)) = (
        &a.application_credential_id,
        &a.application_credential_secret,
    ) {
        return Ok(
            json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret}}}}),
        );
    }
    let password = a
        .password
        .as_deref()
        .ok_or("no password (auth.password / OS_PASSWORD)")?;
    let domain = |name: &Option<String>, id: &Option<String>| match (
        id,
        name.as_ref().or(a.domain_name.as_ref()),
    ) {
        (Some(id), _) => json!({"id": id}),
        (None, Some(n)) => json!({"name": n}),
        (None, None) => json!({"id": "default"}),
    };
    let user = match (&a.user_id, &a.username) {
        (Some(id), _) => json!({"id": id, "password": password}),
        (None, Some(name)) => {
            json!({"name": name, "domain": domain(&a.user_domain_name, &a.user_domain_id), "password": password})
        }
        (None, None) => return Err("no user (auth.username / OS_USERNAME)".into()),
    };
    let scope = match (&a.project_id, &a.project_name) {
        (Some(id), _) => json!({"project": {"id": id}}),
        (None, Some(name)) => {
            json!({"project": {"name": name, "domain": domain(&a.project_domain_name, &a.project_domain_id)}})
        }
        (None, None) => {
            return Err(
                "no project to scope the token to (auth.project_name / OS_PROJECT_NAME)".into(),
            )
        }
    };
    Ok(
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}, "scope": scope}}),
    )
}

/// `.../v3` whatever the user wrote.
pub fn v3_url(auth_url: &str) -> String {
    let u = auth_url.trim_end_matches('/');
    if u.ends_with("/v3") {
        u.to_string()
    } else {
        format!("{u}/v3")
    }
}

/// Picks an endpoint URL from a token's catalog.
pub fn endpoint(
    catalog: &serde_json::Value,
    service_type: &str,
    interface: &str,
    region: Option<&str>,
) -> Option<String> {
    catalog
        .as_array()?
        .iter()
        .filter(|s| s["type"] == service_type)
        .find_map(|s| {
            s["endpoints"].as_array()?.iter().find_map(|e| {
                let region_ok = region.is_none_or(|r| e["region_id"] == r || e["region"] == r);
                (e["interface"] == interface && region_ok)
                    .then(|| {
                        e["url"]
                            .as_str()
                            .map(|u| u.trim_end_matches('/').to_string())
                    })
                    .flatten()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn clouds_yaml_entry_wins_over_env() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("clouds.yaml");
        std::fs::write(&p, "clouds:\n  lab:\n    auth:\n      auth_url: http://ks:5000\n      username: u\n      password: p\n      project_name: demo\n      user_domain_name: Default\n      project_domain_id: default\n    region_name: R1\n    interface: internal\n").expect("write");
        let c = resolve(
            Some("lab"),
            &env_of(&[("OS_AUTH_URL", "http://other")]),
            std::slice::from_ref(&p),
        )
        .expect("resolves");
        assert_eq!(c.auth.auth_url.as_deref(), Some("http://ks:5000"));
        assert_eq!(c.region.as_deref(), Some("R1"));
        assert_eq!(c.interface.as_deref(), Some("internal"));
        let body = token_request(&c.auth).expect("body");
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
        assert_eq!(body["auth"]["scope"]["project"]["domain"]["id"], "default");
        let missing = resolve(Some("nope"), &env_of(&[]), &[p]).expect_err("unknown cloud");
        assert!(missing.contains("cloud `nope`"), "{missing}");
    }

    #[test]
    fn env_and_application_credentials() {
        let c = resolve(
            None,
            &env_of(&[
                ("OS_AUTH_URL", "http://ks/v3/"),
                ("OS_APPLICATION_CREDENTIAL_ID", "id1"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
            ]),
            &[],
        )
        .expect("env");
        let body = token_request(&c.auth).expect("body");
        assert_eq!(
            body["auth"]["identity"]["methods"][0],
            "application_credential"
        );
        assert!(
            body["auth"].get("scope").is_none(),
            "app credentials carry their own scope"
        );
        assert_eq!(v3_url("http://ks/v3/"), "http://ks/v3");
        assert_eq!(v3_url("http://ks:5000"), "http://ks:5000/v3");
        assert!(resolve(None, &env_of(&[]), &[]).is_err());
    }

    #[test]
    fn endpoints_by_type_interface_region() {
        let cat = serde_json::json!([
            {"type": "compute", "endpoints": [
                {"interface": "public", "region_id": "R1", "url": "http://nova-r1/v2.1/"},
                {"interface": "internal", "region_id": "R1", "url": "http://nova-int/v2.1"},
                {"interface": "public", "region_id": "R2", "url": "http://nova-r2/v2.1"}]}]);
        assert_eq!(
            endpoint(&cat, "compute", "public", Some("R2")).as_deref(),
            Some("http://nova-r2/v2.1")
        );
        assert_eq!(
            endpoint(&cat, "compute", "internal", None).as_deref(),
            Some("http://nova-int/v2.1")
        );
        assert_eq!(endpoint(&cat, "network", "public", None), None);
    }
}
