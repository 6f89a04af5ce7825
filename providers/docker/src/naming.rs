//! Names of the Docker objects a deployment owns. Everything is also labelled; names only keep the
//! objects readable in `docker ps` and make a second create of the same node fail fast.

pub fn container_name(deployment: &str, node: &str) -> String {
    format!("flotilla-{deployment}-{node}")
}

pub fn volume_name(deployment: &str, node: &str) -> String {
    format!("flotilla-{deployment}-{node}-docker")
}
