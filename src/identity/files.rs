//! Following identity files on disk.
//!
//! Kubernetes updates a mounted Secret by swapping the `..data` symlink of the
//! volume directory; tbot rewrites the files of its output directory. Both
//! show up as events on the directory holding the file, so the directories
//! are watched (inotify) and a change is picked up at once. The content is
//! also compared every `interval` (`refresh_identity_interval`), which covers
//! file systems that report no events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::publish::IdentityPublisher;
use super::source::IdentityFiles;

/// Writers touch several files in a row; wait for them to finish.
const SETTLE: Duration = Duration::from_millis(25);

/// Re-reads `files` whenever their directory changes (and at least every
/// `interval`) and offers changed content to `publisher`.
pub async fn follow(files: IdentityFiles, interval: Duration, publisher: Arc<IdentityPublisher>, stop: CancellationToken) {
    let changed = Arc::new(Notify::new());
    let source = files.describe();
    let _watcher = match watch_directories(&files, changed.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(source = %source, error = %e, interval = ?interval, "cannot watch the identity files for changes; checking them periodically");
            None
        }
    };
    // Unknown at first: the files may have changed since they were loaded.
    let mut last = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = changed.notified() => tokio::time::sleep(SETTLE).await,
        }
        let now = Some(files.fingerprint_of_content());
        if now == last {
            continue;
        }
        last = now;
        debug!(source = %source, "identity files changed; reloading");
        let files = files.clone();
        match tokio::task::spawn_blocking(move || files.load()).await {
            Ok(parsed) => {
                publisher.offer(parsed, &source);
            }
            Err(e) => tracing::error!(error = %e, "identity reload task failed"),
        }
    }
}

/// Watches the directory of every file (not the files: a symlink swap
/// replaces them).
fn watch_directories(files: &IdentityFiles, changed: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            changed.notify_one();
        }
    })?;
    let mut dirs: Vec<PathBuf> = files.paths().iter().map(|p| directory_of(p)).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

fn directory_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::identity::parse_identity_file;
    use teleport_plugin_sim::pki::ClusterPki;

    fn identity_text(pki: &ClusterPki) -> String {
        pki.issue_identity("plugin", Duration::from_secs(3600)).unwrap().identity_file
    }

    async fn wait_for(publisher: &IdentityPublisher, fingerprint: &str) -> bool {
        let mut rx = publisher.subscribe();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|id| id.fingerprint == fingerprint)).await.is_ok()
    }

    #[tokio::test]
    async fn a_rewritten_file_is_picked_up_without_waiting_for_the_interval() {
        let pki = ClusterPki::new("c").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        std::fs::write(&path, identity_text(&pki)).unwrap();
        let files = IdentityFiles::IdentityFile(path.clone());
        let publisher = Arc::new(IdentityPublisher::new(Arc::new(files.load().unwrap())));
        let stop = CancellationToken::new();
        tokio::spawn(follow(files, Duration::from_secs(3600), publisher.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = identity_text(&pki);
        let fp = parse_identity_file(next.as_bytes()).unwrap().fingerprint;
        std::fs::write(&path, next).unwrap();
        assert!(wait_for(&publisher, &fp).await, "rewrite noticed");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_kubelet_style_symlink_swap_is_picked_up() {
        let pki = ClusterPki::new("c").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The layout kubelet gives a mounted Secret.
        std::fs::create_dir(d.join("..2026_11_01_v1")).unwrap();
        std::fs::write(d.join("..2026_11_01_v1/identity"), identity_text(&pki)).unwrap();
        symlink("..2026_11_01_v1", d.join("..data")).unwrap();
        symlink("..data/identity", d.join("identity")).unwrap();
        let files = IdentityFiles::IdentityFile(d.join("identity"));
        let publisher = Arc::new(IdentityPublisher::new(Arc::new(files.load().unwrap())));
        let stop = CancellationToken::new();
        tokio::spawn(follow(files, Duration::from_secs(3600), publisher.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // kubelet writes a new version and swaps `..data` atomically.
        let next = identity_text(&pki);
        let fp = parse_identity_file(next.as_bytes()).unwrap().fingerprint;
        std::fs::create_dir(d.join("..2026_11_01_v2")).unwrap();
        std::fs::write(d.join("..2026_11_01_v2/identity"), next).unwrap();
        symlink("..2026_11_01_v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        assert!(wait_for(&publisher, &fp).await, "symlink swap noticed");
        stop.cancel();
    }

    #[tokio::test]
    async fn the_interval_still_catches_changes() {
        let pki = ClusterPki::new("c").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        std::fs::write(&path, identity_text(&pki)).unwrap();
        let files = IdentityFiles::IdentityFile(path.clone());
        let publisher = Arc::new(IdentityPublisher::new(Arc::new(files.load().unwrap())));
        let next = identity_text(&pki);
        let fp = parse_identity_file(next.as_bytes()).unwrap().fingerprint;
        // Changed before following starts watching: only the periodic check sees it.
        let stop = CancellationToken::new();
        let task = follow(files, Duration::from_millis(200), publisher.clone(), stop.clone());
        std::fs::write(&path, next).unwrap();
        tokio::spawn(task);
        assert!(wait_for(&publisher, &fp).await);
        stop.cancel();
    }
}
