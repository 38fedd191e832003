//! The two label maps Teleport derives from the resources a request names,
//! for `access_request.spec.resource_labels_union` and
//! `access_request.spec.resource_labels_intersection`.
//!
//! Upstream (`lib/accessmonitoring`, the access request expression
//! environment) computes them from the requested resources it could list,
//! each resource contributing all its labels (static ones plus the current
//! results of command labels):
//! - the union maps every key to the set of values any resource has for it;
//! - the intersection keeps a key only when every resource has it with the
//!   same value, so each key maps to exactly that one value;
//! - with no resource (a role request, or none of them could be found) both
//!   are empty.
//!
//! Both are maps of sets, read like `system_annotations`: a missing key is
//! the empty set.

use std::collections::BTreeMap;

/// Labels of one resource.
pub type Labels = BTreeMap<String, String>;
/// A label map as conditions read it: key → set of values (sorted, unique).
pub type LabelSets = BTreeMap<String, Vec<String>>;

/// Every value each key has on some resource.
pub fn union(resources: &[Labels]) -> LabelSets {
    let mut out = LabelSets::new();
    for (k, v) in resources.iter().flatten() {
        let values = out.entry(k.clone()).or_default();
        if let Err(at) = values.binary_search(v) {
            values.insert(at, v.clone());
        }
    }
    out
}

/// The labels every resource has, with the same value.
pub fn intersection(resources: &[Labels]) -> LabelSets {
    let Some((first, rest)) = resources.split_first() else {
        return LabelSets::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|r| r.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sets(pairs: &[(&str, &[&str])]) -> LabelSets {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn no_resources_give_empty_maps() {
        assert!(union(&[]).is_empty());
        assert!(intersection(&[]).is_empty());
    }

    #[test]
    fn one_resource_is_its_own_union_and_intersection() {
        let r = [labels(&[("env", "prod"), ("team", "a")])];
        let want = sets(&[("env", &["prod"]), ("team", &["a"])]);
        assert_eq!(union(&r), want);
        assert_eq!(intersection(&r), want);
    }

    #[test]
    fn union_collects_values_intersection_keeps_shared_pairs() {
        let r = [
            labels(&[("env", "prod"), ("team", "a"), ("os", "linux")]),
            labels(&[("env", "prod"), ("team", "b")]),
            labels(&[("env", "prod"), ("team", "a"), ("os", "linux")]),
        ];
        assert_eq!(union(&r), sets(&[("env", &["prod"]), ("os", &["linux"]), ("team", &["a", "b"])]));
        // `team` differs, `os` is missing on one: only `env` is shared.
        assert_eq!(intersection(&r), sets(&[("env", &["prod"])]));
    }

    #[test]
    fn disjoint_resources_share_nothing() {
        let r = [labels(&[("env", "prod")]), labels(&[("region", "eu")])];
        assert_eq!(union(&r), sets(&[("env", &["prod"]), ("region", &["eu"])]));
        assert!(intersection(&r).is_empty());
    }
}
