//! Following identity files on disk.
//!
//! Kubernetes updates a mounted Secret by swapping the `..data` symlink of
//! the volume directory; tbot rewrites its output directory in place. Both
//! are caught by checking the files' content every `interval` (cheap: a few
//! KiB) rather than by trusting file-system events, which symlink swaps and
//! network file systems do not report reliably.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::publish::IdentityPublisher;
use super::source::IdentityFiles;

/// Re-reads `files` every `interval` and offers changed content.
pub async fn follow(files: IdentityFiles, interval: Duration, publisher: Arc<IdentityPublisher>, stop: CancellationToken) {
    let mut last = files.fingerprint_of_content();
    let source = files.describe();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = files.fingerprint_of_content();
        if now == last {
            continue;
        }
        last = now;
        let files = files.clone();
        let parsed = tokio::task::spawn_blocking(move || files.load()).await;
        match parsed {
            Ok(parsed) => {
                publisher.offer(parsed, &source);
            }
            Err(e) => tracing::error!(error = %e, "identity reload task failed"),
        }
    }
}
