//! Prometheus metrics of the API and of the heals it ran, in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealLabels {
    deployment: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    deployment: String,
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    deployment: String,
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    outcome: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    heals: Family<HealLabels, Counter>,
    replacements: Family<DeploymentLabels, Counter>,
    nodes: Family<NodeLabels, Gauge>,
    last_run: Family<RunLabels, Gauge<f64, AtomicU64>>,
    last_success: Family<RunLabels, Gauge>,
    alerts: Family<AlertLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "flotilla_api_requests",
            "API requests by route and HTTP status",
            requests.clone(),
        );
        let heals = Family::<HealLabels, Counter>::default();
        registry.register(
            "flotilla_heals",
            "Heal runs by deployment and result (replaced, restarted, healthy, refused, locked, failed)",
            heals.clone(),
        );
        let replacements = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "flotilla_replacements",
            "Nodes replaced by heal",
            replacements.clone(),
        );
        let nodes = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "flotilla_nodes",
            "Nodes by health at the last status or heal",
            nodes.clone(),
        );
        let last_run = Family::<RunLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "flotilla_last_run_timestamp_seconds",
            "When the API last ran a command on a deployment",
            last_run.clone(),
        );
        let last_success = Family::<RunLabels, Gauge>::default();
        registry.register(
            "flotilla_last_run_success",
            "1 when the last command the API ran on a deployment succeeded",
            last_success.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "flotilla_webhook_alerts",
            "Alertmanager alerts received, by what was done with them",
            alerts.clone(),
        );
        Self {
            registry,
            requests,
            heals,
            replacements,
            nodes,
            last_run,
            last_success,
            alerts,
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, code: u16) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                code,
            })
            .inc();
    }

    pub fn heal(&self, deployment: &str, result: &str, replaced: usize) {
        self.heals
            .get_or_create(&HealLabels {
                deployment: deployment.into(),
                result: result.into(),
            })
            .inc();
        if replaced > 0 {
            self.replacements
                .get_or_create(&DeploymentLabels {
                    deployment: deployment.into(),
                })
                .inc_by(replaced as u64);
        }
    }

    pub fn nodes(&self, deployment: &str, healthy: usize, unhealthy: usize) {
        for (health, n) in [("healthy", healthy), ("unhealthy", unhealthy)] {
            self.nodes
                .get_or_create(&NodeLabels {
                    deployment: deployment.into(),
                    health: health.into(),
                })
                .set(n as i64);
        }
    }

    pub fn run(&self, deployment: &str, command: &str, ok: bool) {
        let labels = RunLabels {
            deployment: deployment.into(),
            command: command.into(),
        };
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.last_run.get_or_create(&labels).set(now);
        self.last_success.get_or_create(&labels).set(i64::from(ok));
    }

    pub fn alert(&self, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_text_format() {
        let m = Metrics::default();
        m.request("/v1/deployments", 200);
        m.heal("web", "replaced", 2);
        m.nodes("web", 3, 1);
        m.run("web", "heal", true);
        m.alert("heal_started");
        let text = m.encode();
        for want in [
            "flotilla_api_requests_total{route=\"/v1/deployments\",code=\"200\"} 1",
            "flotilla_heals_total{deployment=\"web\",result=\"replaced\"} 1",
            "flotilla_replacements_total{deployment=\"web\"} 2",
            "flotilla_nodes{deployment=\"web\",health=\"unhealthy\"} 1",
            "flotilla_last_run_success{deployment=\"web\",command=\"heal\"} 1",
            "flotilla_webhook_alerts_total{outcome=\"heal_started\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
