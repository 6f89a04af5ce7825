//! Prints the name of flotilla's default node image on the Docker engine at `DOCKER_HOST`,
//! building it first when it is missing (the docker provider's own preflight, exactly as `up`
//! does it). The benchmarks start their test hosts from it.

use flotilla_provider_core::{Ownership, Provider};
use flotilla_provider_docker::{DockerConfig, DockerProvider};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = DockerConfig {
        host: std::env::var("DOCKER_HOST").ok(),
        ..Default::default()
    };
    let provider = DockerProvider::connect(cfg, flotilla::state::cache_dir()).await?;
    provider.preflight(&Ownership::new("bench")).await?;
    println!("{}", provider.image());
    Ok(())
}
