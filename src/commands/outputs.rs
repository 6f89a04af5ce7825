use crate::error::{Error, Result};
use crate::state::Home;
use std::collections::BTreeMap;

pub fn run(home: &Home, deployment: &str, json: bool) -> Result<i32> {
    let state = home.load_existing(deployment)?;
    let mut outputs: BTreeMap<String, String> = state.outputs.clone();
    let kubeconfig = home.deployment_dir(deployment)?.join("kubeconfig");
    if kubeconfig.exists() && !outputs.contains_key("kubeconfig") {
        outputs.insert("kubeconfig".into(), kubeconfig.display().to_string());
    }
    if json {
        super::print_json(&outputs);
    } else {
        for (k, v) in &outputs {
            crate::say!("{k} = {v}");
        }
    }
    Ok(0)
}

/// Prints the kubeconfig's path (exit 4 when the deployment has none).
pub fn kubeconfig(home: &Home, deployment: &str, json: bool) -> Result<i32> {
    let state = home.load_existing(deployment)?;
    let path = home.deployment_dir(deployment)?.join("kubeconfig");
    if !path.exists() {
        return Err(Error::Usage(format!(
            "deployment `{deployment}` has no kubeconfig (its cluster is `{}`; one is written when a Kubernetes cluster has been formed)",
            state.cluster.kind
        )));
    }
    if json {
        super::print_json(&serde_json::json!({"kubeconfig": path.display().to_string()}));
    } else {
        crate::say!("{}", path.display());
    }
    Ok(0)
}
