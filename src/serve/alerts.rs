//! Alertmanager's webhook (payload version 4): firing alerts whose labels name a deployment
//! (`flotilla_deployment`, or `deployment`) become one heal of that deployment. Resolved alerts
//! and alerts without such a label are acknowledged and ignored.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
pub struct Webhook {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The label keys that name the deployment, in order of preference.
pub const DEPLOYMENT_LABELS: &[&str] = &["flotilla_deployment", "deployment"];

/// Deployments named by firing alerts (each once, in first-seen order), and how many alerts were
/// ignored (resolved, or naming no deployment).
pub fn deployments_to_heal(hook: &Webhook) -> (Vec<String>, usize) {
    let mut out: Vec<String> = Vec::new();
    let mut ignored = 0;
    for a in &hook.alerts {
        let name = DEPLOYMENT_LABELS
            .iter()
            .find_map(|k| a.labels.get(*k))
            .filter(|n| !n.is_empty());
        match (a.status.as_str(), name) {
            ("firing", Some(n)) => {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            _ => ignored += 1,
        }
    }
    (out, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_alerts_name_deployments_once() {
        let hook: Webhook = serde_json::from_str(
            r#"{"version":"4","status":"firing","receiver":"flotilla","groupLabels":{},"commonLabels":{},
                "alerts":[
                  {"status":"firing","labels":{"alertname":"NodeDown","flotilla_deployment":"web","node":"workers-1"}},
                  {"status":"firing","labels":{"alertname":"NodeDown","flotilla_deployment":"web","node":"workers-2"}},
                  {"status":"firing","labels":{"alertname":"Other","deployment":"db"}},
                  {"status":"resolved","labels":{"flotilla_deployment":"old"}},
                  {"status":"firing","labels":{"alertname":"NoLabel"}}]}"#,
        )
        .expect("payload");
        assert_eq!(hook.version, "4");
        let (deps, ignored) = deployments_to_heal(&hook);
        assert_eq!(deps, vec!["web", "db"]);
        assert_eq!(ignored, 2);
    }
}
