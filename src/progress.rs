//! Progress for humans on stderr: indicatif bars (one line per node plus an overall bar) on a
//! TTY, plain timestamped lines otherwise (CI logs, cron mail). Machine output goes to stdout only.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

pub struct Progress {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl Progress {
    /// `quiet` silences everything but warnings (used with `-o json` when stderr is not a TTY? no:
    /// JSON goes to stdout, so progress stays on stderr unless --quiet).
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal()
            && std::env::var_os("FLOTILLA_PLAIN_PROGRESS").is_none();
        if tty && !quiet {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            overall.enable_steady_tick(std::time::Duration::from_millis(120));
            Self {
                multi: Some(multi),
                overall: Some(overall),
                bars: Mutex::new(HashMap::new()),
                quiet,
            }
        } else {
            Self {
                multi: None,
                overall: None,
                bars: Mutex::new(HashMap::new()),
                quiet,
            }
        }
    }

    fn plain(&self, scope: &str, msg: &str) {
        if !self.quiet {
            crate::tell!("{} [{scope}] {msg}", crate::util::now_rfc3339());
        }
    }

    pub fn stage(&self, name: &str, total: u64) {
        match &self.overall {
            Some(o) => {
                o.set_prefix(name.to_string());
                o.set_length(total);
                o.set_position(0);
            }
            None => self.plain("flotilla", &format!("{name} ({total} steps)")),
        }
    }

    pub fn info(&self, msg: &str) {
        match (&self.multi, &self.overall) {
            (Some(m), _) => {
                let _ = m.println(msg);
            }
            _ => self.plain("flotilla", msg),
        }
    }

    pub fn node(&self, node: &str, msg: &str) {
        match &self.multi {
            Some(m) => {
                let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
                let bar = bars.entry(node.to_string()).or_insert_with(|| {
                    let b = m.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:<14} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(node.to_string());
                    b.enable_steady_tick(std::time::Duration::from_millis(120));
                    b
                });
                bar.set_message(msg.to_string());
            }
            None => self.plain(node, msg),
        }
    }

    pub fn node_done(&self, node: &str, ok: bool, msg: &str) {
        match &self.multi {
            Some(_) => {
                let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(b) = bars.get(node) {
                    b.finish_with_message(format!("{} {msg}", if ok { "ok" } else { "FAILED" }));
                }
            }
            None => self.plain(
                node,
                &format!("{} {msg}", if ok { "ok:" } else { "FAILED:" }),
            ),
        }
        if let Some(o) = &self.overall {
            o.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        for b in bars.values() {
            if !b.is_finished() {
                b.finish();
            }
        }
    }
}
