//! Installing and starting Docker on a node over SSH, from the templates in `templates/docker-install/`.

pub mod install;
pub mod preload;
mod probe;

pub use install::{install_script, offline_bundle, Family, InstallError};
pub use probe::{parse_probe, Probe, SwarmLocal, PROBE_SCRIPT};

/// A script that runs a long-lived container unless one with the same spec (kept in the label
/// `io.flotilla.spec`) already runs; otherwise it replaces it. Prints `<name>=unchanged` or
/// `<name>=started`. Everything is quoted here; `args` go before the image, `command` after it.
pub fn run_script(
    name: &str,
    image: &str,
    args: &[String],
    command: &[String],
    dirs: &[&str],
) -> String {
    use crate::ssh::shell_quote;
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let cmd: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
    let spec = format!("{} {image} {}", args.join(" "), command.join(" "));
    let mkdirs: String = dirs
        .iter()
        .map(|d| format!("mkdir -p {}\n", shell_quote(d)))
        .collect();
    format!(
        "set -eu\n\
         spec={spec}\n\
         have=$(docker inspect -f '{{{{index .Config.Labels \"io.flotilla.spec\"}}}}' {name} 2>/dev/null || true)\n\
         running=$(docker inspect -f '{{{{.State.Running}}}}' {name} 2>/dev/null || true)\n\
         if [ \"$have\" = \"$spec\" ] && [ \"$running\" = true ]; then echo {name}=unchanged; exit 0; fi\n\
         docker rm -f {name} >/dev/null 2>&1 || true\n\
         {mkdirs}\
         docker run -d --name {name} --label \"io.flotilla.spec=$spec\" {args} {image} {cmd} >/dev/null\n\
         echo {name}=started\n",
        spec = shell_quote(spec.trim()),
        name = shell_quote(name),
        args = quoted.join(" "),
        image = shell_quote(image),
        cmd = cmd.join(" "),
    )
}
