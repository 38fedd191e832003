//! One channel read shared by every lookup waiting for it.
//!
//! After a burst of uncertain posts (timeouts, a cut connection) each
//! request looks for its own message in the channel's recent history before
//! posting again. Done one by one, a hundred lookups are a hundred history
//! reads against a method the chat limits to a few dozen calls a minute, and
//! the backlog takes minutes to clear. Here lookups of one channel share a
//! read, on one rule that keeps them correct: a lookup may only use a read
//! that *started after the lookup was asked* (an earlier read may predate the
//! post it is looking for) and that reaches back far enough.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Reads per key (a channel), each covering everything from a point in time
/// (`from`, in the caller's unit) to when it was made.
pub struct SharedReads<K, V> {
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

struct Slot<V> {
    /// The oldest point any lookup waiting for the next read needs.
    wanted: Mutex<Option<u64>>,
    /// Held while a read runs, so lookups arriving meanwhile queue for one
    /// next read instead of each making their own.
    last: tokio::sync::Mutex<Option<Read<V>>>,
}

struct Read<V> {
    started: Instant,
    from: u64,
    value: Arc<V>,
}

impl<K: Eq + Hash + Clone, V> Default for SharedReads<K, V> {
    fn default() -> Self {
        Self { slots: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V> SharedReads<K, V> {
    /// The contents of `key` from `from` on, as seen after this call began:
    /// the read another lookup started after this one was asked when it
    /// reaches back to `from`, otherwise a new read by `fetch` (from the
    /// oldest point any waiting lookup needs). A failed read is not shared:
    /// every lookup waiting for it reads again.
    pub async fn read<E, Fut>(&self, key: &K, from: u64, fetch: impl FnOnce(u64) -> Fut) -> Result<Arc<V>, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        let asked = Instant::now();
        let slot = self.slot(key);
        {
            let mut w = slot.wanted.lock().expect("poisoned");
            *w = Some(w.map_or(from, |w| w.min(from)));
        }
        let mut last = slot.last.lock().await;
        if let Some(r) = last.as_ref()
            && r.started >= asked
            && r.from <= from
        {
            return Ok(r.value.clone());
        }
        let from = slot.wanted.lock().expect("poisoned").take().map_or(from, |w| w.min(from));
        let started = Instant::now();
        let value = Arc::new(fetch(from).await?);
        *last = Some(Read { started, from, value: value.clone() });
        Ok(value)
    }

    fn slot(&self, key: &K) -> Arc<Slot<V>> {
        self.slots
            .lock()
            .expect("poisoned")
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Slot { wanted: Mutex::new(None), last: tokio::sync::Mutex::new(None) }))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A read that takes a while and records where it started from.
    async fn slow_read(reads: &AtomicUsize, froms: &Mutex<Vec<u64>>, from: u64) -> Result<usize, ()> {
        let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
        froms.lock().unwrap().push(from);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(n)
    }

    #[tokio::test]
    async fn lookups_waiting_for_a_read_share_the_next_one() {
        let shared = Arc::new(SharedReads::<&str, usize>::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let froms = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let (shared, reads, froms) = (shared.clone(), reads.clone(), froms.clone());
            tasks.push(tokio::spawn(async move {
                *shared.read(&"C1", 100 - i, |from| slow_read(&reads, &froms, from)).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // The first lookup reads alone; the other 19 queued behind it and
        // share one read reaching back to the oldest of them.
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(*froms.lock().unwrap().last().unwrap(), 81);
    }

    #[tokio::test]
    async fn a_read_that_started_before_the_lookup_is_never_used() {
        let shared = SharedReads::<&str, usize>::default();
        let reads = AtomicUsize::new(0);
        let froms = Mutex::new(Vec::new());
        assert_eq!(*shared.read(&"C1", 10, |f| slow_read(&reads, &froms, f)).await.unwrap(), 1);
        // Same channel, same point, later: the earlier read may miss a post
        // made since, so this one reads again.
        assert_eq!(*shared.read(&"C1", 10, |f| slow_read(&reads, &froms, f)).await.unwrap(), 2);
        // Another channel has its own reads.
        assert_eq!(*shared.read(&"C2", 10, |f| slow_read(&reads, &froms, f)).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_shared() {
        let shared = Arc::new(SharedReads::<&str, usize>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let first = {
            let (shared, calls) = (shared.clone(), calls.clone());
            tokio::spawn(async move {
                shared
                    .read(&"C1", 5, |_| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err::<usize, &str>("timeout")
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let calls2 = calls.clone();
        let second = shared
            .read(&"C1", 5, |_| async move {
                calls2.fetch_add(1, Ordering::SeqCst);
                Ok::<usize, &str>(7)
            })
            .await;
        assert_eq!(first.await.unwrap(), Err("timeout"));
        assert_eq!(*second.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
