//! A small time-bounded map for recipient lookups (email → user, names →
//! channel IDs), so routing the same recipients again does not call the API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Entries kept at most; beyond it expired entries are dropped, then all.
const MAX_ENTRIES: usize = 10_000;

pub struct TtlCache<V> {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.lock();
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: &str, value: V) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key.to_string(), (Instant::now(), value));
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keys remembered for a while: within `ttl` of its first use a key keeps
/// the value made then (redelivered clicks, replayed interaction ids). Past
/// 10,000 keys the expired ones are dropped; live ones are never dropped.
pub struct Remembered<V> {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Remembered<V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, map: Mutex::default() }
    }

    /// The value of `key`, made by `make` when the key is new or expired;
    /// `true` when it was made by this call.
    pub fn get_or_make(&self, key: &str, make: impl FnOnce() -> V) -> (V, bool) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        match map.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl => (v.clone(), false),
            _ => {
                let v = make();
                map.insert(key.to_string(), (Instant::now(), v.clone()));
                (v, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_keys_keep_their_first_value_until_they_expire() {
        let r = Remembered::new(Duration::from_millis(30));
        assert_eq!(r.get_or_make("a", || 1), (1, true));
        assert_eq!(r.get_or_make("a", || 2), (1, false));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(r.get_or_make("a", || 3), (3, true));
    }

    #[test]
    fn entries_expire() {
        let c = TtlCache::new(Duration::from_millis(30));
        c.put("a", 1);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("b"), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a"), None);
    }
}
