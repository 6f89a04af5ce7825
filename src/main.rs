use clap::Parser;
use flotilla::cli::{Cli, Output};
use flotilla::error::exit;

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,openssh=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let json = cli.output == Output::Json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            flotilla::tell!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILURE);
        }
    };
    let code = match runtime.block_on(flotilla::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            for line in e.to_string().lines() {
                flotilla::tell!("error: {line}");
            }
            if json {
                let problems = match &e {
                    flotilla::error::Error::Invalid(p) => {
                        serde_json::to_value(&p.0).unwrap_or_default()
                    }
                    _ => serde_json::Value::Null,
                };
                let body = serde_json::json!({"error": {"kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code(), "problems": problems}});
                flotilla::say!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                );
            }
            e.exit_code()
        }
    };
    // Remote sessions are closed by then; drop the runtime without waiting on stray tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
