//! Logging set-up with `tracing`: text (default) or JSON, to stdout, stderr
//! or a file, at the configured severity. `RUST_LOG` overrides the level
//! filter; `--debug` forces debug. Text is coloured only when it goes to a
//! terminal and `NO_COLOR` is unset: `kubectl logs` and log files get plain
//! text.

use std::ffi::OsString;
use std::fs::File;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::{LogConfig, LogOutput};

/// Installs the global subscriber. Returns an error only for an unusable
/// log file; calling it twice keeps the first subscriber.
pub fn init(cfg: &LogConfig, debug: bool) -> Result<(), String> {
    let level = if debug { "debug" } else { cfg.severity.as_str() };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new(level)),
        // Our crate at the configured level; dependencies only when they warn.
        _ => EnvFilter::new(format!("warn,teleport_plugin={level}")),
    };
    let writer = match &cfg.output {
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogOutput::File(path) => {
            let f = File::create(path).map_err(|e| format!("log.output: cannot create {}: {e}", path.display()))?;
            BoxMakeWriter::new(Mutex::new(f))
        }
    };
    let terminal = match &cfg.output {
        LogOutput::Stdout => std::io::stdout().is_terminal(),
        LogOutput::Stderr => std::io::stderr().is_terminal(),
        LogOutput::File(_) => false,
    };
    let ansi = use_colour(terminal, std::env::var_os("NO_COLOR"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false).with_ansi(ansi && !cfg.json);
    let result = if cfg.json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if result.is_ok() {
        ON_CONSOLE.store(!matches!(cfg.output, LogOutput::File(_)), Ordering::Relaxed);
        if debug {
            tracing::debug!("DEBUG logging enabled");
        }
    }
    Ok(())
}

/// Set once the installed subscriber writes to stdout or stderr.
static ON_CONSOLE: AtomicBool = AtomicBool::new(false);

/// Whether log lines already reach the console (stdout or stderr, which
/// `kubectl logs` and journald show together), so a fatal error logged
/// there needs no second, plain copy.
pub fn logs_to_console() -> bool {
    ON_CONSOLE.load(Ordering::Relaxed)
}

/// Colours for a terminal only, and never when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
pub fn use_colour(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logging before the configuration is read: text on stderr.
pub fn init_default() {
    let cfg = LogConfig { output: LogOutput::Stderr, severity: "info".into(), json: false };
    let _ = init(&cfg, false);
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some("1".into())));
    }
}
