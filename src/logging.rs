//! Logging set-up with `tracing`: text (default) or JSON, to stdout, stderr
//! or a file, at the configured severity. `RUST_LOG` overrides the level
//! filter; `--debug` forces debug.

use std::fs::File;
use std::sync::Mutex;

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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false);
    let result = if cfg.json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if result.is_ok() && debug {
        tracing::debug!("DEBUG logging enabled");
    }
    Ok(())
}

/// Logging before the configuration is read: text on stderr.
pub fn init_default() {
    let cfg = LogConfig { output: LogOutput::Stderr, severity: "info".into(), json: false };
    let _ = init(&cfg, false);
}
