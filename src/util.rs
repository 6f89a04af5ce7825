//! Small helpers shared by every module.

use std::path::PathBuf;

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// RFC 3339 (UTC, whole seconds) of now plus `d`.
pub fn rfc3339_after(d: std::time::Duration) -> String {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .and_then(|t| t.round(jiff::Unit::Second))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Time from now until an RFC 3339 instant: positive ahead, negative past; `None` when it does
/// not parse.
pub fn seconds_until(at: &str) -> Option<i64> {
    let t: jiff::Timestamp = at.parse().ok()?;
    Some(t.as_second() - jiff::Timestamp::now().as_second())
}

/// "expires in 2h 05m" / "expired 10m ago" for an RFC 3339 expiry.
pub fn time_left(at: &str) -> String {
    match seconds_until(at) {
        Some(s) if s > 0 => format!(
            "expires in {}",
            human_duration(std::time::Duration::from_secs(s as u64))
        ),
        Some(s) => format!(
            "expired {} ago",
            human_duration(std::time::Duration::from_secs(s.unsigned_abs()))
        ),
        None => format!("expiry `{at}` unreadable"),
    }
}

/// A run token: sortable by time, unique by its random tail. Recorded on every resource a run creates.
pub fn new_run_token() -> String {
    let ts = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S");
    format!("r{ts}-{:08x}", rand::random::<u32>())
}

pub fn expand_tilde(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(p),
    }
}

/// Renders a duration the way people write them (`1m 5s`).
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// An error and its sources, `: `-joined (a source whose text is already shown is skipped).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// Test helper: a rendered script must at least be valid POSIX shell (`sh -n`).
#[cfg(test)]
pub fn assert_sh_syntax(script: &str) {
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "sh -n failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `println!` that never panics: a reader that stopped early (`| head`) or a closed stdout
/// is not an error worth a panic, and nothing more can be shown there anyway.
#[macro_export]
macro_rules! say {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (a closed stderr).
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
