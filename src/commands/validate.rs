use crate::blueprint;
use crate::cli::BlueprintArgs;
use crate::error::Result;
use serde_json::json;

pub fn run(args: &BlueprintArgs, json: bool) -> Result<i32> {
    let bp = blueprint::load(&args.blueprint, &args.set)?;
    // `services:` files are read and rendered by `up`; check them here too.
    if let Err(problems) = crate::engine::services::render_all(&bp) {
        return Err(crate::error::Error::Usage(format!(
            "{}: {}",
            args.blueprint.display(),
            problems.join("\n")
        )));
    }
    if json {
        super::print_json(&json!({
            "valid": true,
            "deployment": bp.name,
            "provider": bp.provider.kind(),
            "cluster": bp.cluster.as_str(),
            "groups": bp.groups,
            "inputs": bp.inputs,
        }));
    } else {
        let nodes: u32 = bp.groups.iter().map(|g| g.count).sum();
        crate::say!(
            "{}: valid (deployment `{}`, {} provider, {} cluster, {} nodes in {} groups)",
            args.blueprint.display(),
            bp.name,
            bp.provider.kind(),
            bp.cluster.as_str(),
            nodes,
            bp.groups.len()
        );
    }
    Ok(0)
}
