use crate::engine::ps::{ps, Signal};
use crate::error::{exit, Error, Result};
use crate::state::Home;

pub async fn run(home: &Home, deployment: &str, node: Option<&str>, json: bool) -> Result<i32> {
    let r = ps(home, deployment, node).await?;
    if json {
        super::print_json(&r);
    } else {
        let mut t = crate::table::Table::new(&[
            "NODE",
            "CONTAINER ID",
            "NAME",
            "IMAGE",
            "STATE",
            "OWNER",
            "DETAIL",
        ]);
        for c in &r.containers {
            t.row([
                c.node.to_string(),
                c.id.to_string(),
                c.name.to_string(),
                c.image.to_string(),
                c.state.to_string(),
                c.owner.to_string(),
                c.detail.to_string(),
            ]);
        }
        t.print();
        for (n, why) in &r.unreachable {
            crate::say!("{n}: not asked ({why})");
        }
    }
    Ok(if r.unreachable.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

pub async fn signal(
    home: &Home,
    a: &crate::cli::ContainerArgs,
    how: Signal,
    json: bool,
) -> Result<i32> {
    let (deployment, node, container) =
        (a.deployment.as_str(), a.node.as_str(), a.container.as_str());
    let r = match crate::engine::ps::signal(home, deployment, node, container, how, a.yes).await {
        Err(Error::Usage(why)) if !a.yes && why.contains("not created by flotilla") => {
            if super::confirm(&format!("{why}\nGo ahead?")) {
                crate::engine::ps::signal(home, deployment, node, container, how, true).await?
            } else {
                return Err(Error::Usage(why));
            }
        }
        other => other?,
    };
    let verb = match how {
        Signal::Stop => "stopped",
        Signal::Kill => "killed",
    };
    if json {
        super::print_json(&serde_json::json!({"node": node, verb: r}));
    } else {
        crate::say!("{verb} {} ({}) on {node}; owner: {}", r.name, r.id, r.owner);
    }
    Ok(exit::OK)
}
