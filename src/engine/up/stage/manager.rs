//! Installs the manager when the blueprint has a `manager:` section and none is installed;
//! an installed one is left alone (`flotilla manager upgrade|recover` change it).

use crate::engine::up::context::Ctx;
use crate::error::Result;
use crate::ssh::Target;
use crate::state::Phase;
use serde_json::json;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    if cx.bp.manager.is_none() {
        return Ok(());
    }
    if let Some(m) = &cx.state.manager {
        if cx.state.nodes.contains_key(&m.node) {
            cx.report.manager =
                Some(json!({"action": "present", "node": m.node, "image": m.image}));
            return Ok(());
        }
    }
    cx.progress.stage("manager", 1);
    cx.progress.info(
        "installing the flotilla manager (image build on first use, then docker save | ssh docker load)",
    );
    let targets: Vec<Target> = cx.probed.values().map(|(t, _)| t.clone()).collect();
    let opts = crate::manager::InstallOptions::default();
    let pool = cx.pool.clone();
    let installed =
        crate::manager::install_locked(cx.home, &mut cx.state, cx.bp, &pool, &targets, &opts).await;
    match installed {
        Ok(r) => {
            cx.j("manager", &r.node, Phase::Done, json!({"image": r.image}))?;
            cx.progress.node_done(&r.node, true, "manager installed");
            cx.report.manager = serde_json::to_value(&r).ok();
        }
        Err(e) => {
            cx.j(
                "manager",
                "",
                Phase::Failed,
                json!({"error": e.to_string()}),
            )?;
            cx.report.failed.insert("manager".into(), e.to_string());
        }
    }
    Ok(())
}
