//! `docker.preload_images` on every reachable node, before any of them joins: a node that cannot
//! get the images is not joined (the cluster would schedule tasks there that cannot start).

use crate::engine::nodes;
use crate::engine::up::context::Ctx;
use crate::error::{Error, Result};
use crate::state::Phase;
use serde_json::json;
use std::sync::Arc;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    if cx.bp.docker.preload_images.is_empty() || cx.probed.is_empty() {
        return Ok(());
    }
    let archives: Vec<Arc<nodes::LoadedArchive>> = nodes::read_preload_archives(cx.bp)
        .map_err(Error::Other)?
        .into_iter()
        .map(Arc::new)
        .collect();
    cx.progress.stage("images", cx.probed.len() as u64);
    let pool = cx.pool.clone();
    let archives = &archives;
    let jobs: Vec<_> = cx
        .probed
        .iter()
        .map(|(n, (t, _))| (n.clone(), t.clone()))
        .collect();
    let results: Vec<(String, std::result::Result<Vec<String>, String>)> = pool
        .fan_out(jobs, |(name, t)| {
            let pool = pool.clone();
            async move {
                let r = nodes::preload_images(&pool, &t, archives).await;
                (name, r)
            }
        })
        .await;
    for (name, r) in results {
        match r {
            Ok(tags) if tags.is_empty() => cx.progress.node_done(&name, true, "images present"),
            Ok(tags) => {
                cx.progress
                    .node_done(&name, true, &format!("loaded {}", tags.join(", ")));
                cx.j("preload-images", &name, Phase::Done, json!({"tags": tags}))?;
                cx.report.images_loaded.insert(name, tags);
            }
            Err(e) => {
                cx.progress.node_done(&name, false, &e);
                cx.j("preload-images", &name, Phase::Failed, json!({"error": e}))?;
                cx.report.failed.insert(name.clone(), e);
                cx.probed.remove(&name);
            }
        }
    }
    Ok(())
}
