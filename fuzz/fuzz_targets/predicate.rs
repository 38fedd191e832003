//! Access Monitoring Rule conditions on any text (complements the proptests
//! in `src/engine/predicate/tests.rs` with coverage guidance): parsing never
//! panics; a parsed condition prints to a form that parses back to the same
//! condition with the same verdict; the plugin guard keeps the verdict
//! for its plugin and refuses every other.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use teleport_plugin::engine::predicate::{Condition, MAX_CONDITION_LEN, RequestFacts};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let cond = match Condition::parse(input) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                e.line() >= 1 && e.column() >= 1,
                "position {}:{} for {input:?}",
                e.line(),
                e.column()
            );
            assert!(!e.reason().is_empty(), "no reason for {input:?}");
            let _ = e.to_string();
            return;
        }
    };
    assert!(input.len() <= MAX_CONDITION_LEN);

    // Facts made of the input's own words, so that comparisons and
    // membership tests can come out true as well as false.
    let words: Vec<String> = input
        .split(|c: char| !(c.is_alphanumeric() || "-_.@:/".contains(c)))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let half = words.len() / 2;
    let annotations: BTreeMap<String, Vec<String>> = words
        .iter()
        .map(|w| (w.clone(), words[..half].to_vec()))
        .collect();
    let user = words.first().cloned().unwrap_or_default();
    let reason = words.last().cloned().unwrap_or_default();
    let variants: [(&[String], &[String], &str); 3] = [
        (&words[..half], &words[half..], "slack"),
        (
            &words[half..],
            &words[..half],
            words.get(1).map_or("discord", String::as_str),
        ),
        (&[], &[], ""),
    ];

    let printed = cond.to_string();
    let reparsed = Condition::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
    assert_eq!(reparsed, cond, "{input:?} printed as {printed:?}");
    for (roles, reviewers, plugin) in variants {
        let facts = RequestFacts {
            user: &user,
            roles,
            suggested_reviewers: reviewers,
            request_reason: &reason,
            system_annotations: &annotations,
            plugin_name: plugin,
            user_traits: &annotations,
            resource_labels_union: &annotations,
            resource_labels_intersection: &annotations,
            // Before 1970 and after: day() and clock_between() on both.
            creation_time: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(input.len() as u64 * 7919)),
            expiry: std::time::UNIX_EPOCH.checked_sub(std::time::Duration::from_secs(input.len() as u64 * 104_729 + 1)),
        };
        let verdict = cond.matches(&facts);
        assert_eq!(reparsed.matches(&facts), verdict, "{printed:?}");

        // Teleport's `notification.name` guard: matches only for that plugin.
        let guarded = cond.clone().restricted_to_plugin(plugin);
        assert_eq!(
            guarded.matches(&facts),
            verdict,
            "guard for {plugin:?} changed {printed:?}"
        );
        let other = cond.clone().restricted_to_plugin("another-plugin");
        assert!(!other.matches(&facts) || plugin == "another-plugin");
    }
});
