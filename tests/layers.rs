//! The product's modules depend only downwards, and none of them reaches the
//! simulators outside the `demo` command and unit tests.
//!
//! Layers, bottom first; a module may use modules of lower layers only:
//!
//! | layer | modules | why there |
//! |---|---|---|
//! | 0 | `model`, `metrics`, `timefmt` | plain types and counters |
//! | 1 | `identity` | credentials and CA bundles |
//! | 2 | `config` | validates paths and CAs with `identity` |
//! | 3 | `logging` | set up from `config` |
//! | 4 | `teleport` | the Auth client, plugin data |
//! | 5 | `chat` | chat clients and renderers, over plugin data |
//! | 6 | `health` | readiness from identity, stream and pipeline states |
//! | 7 | `engine`, `review` | drives the chats, reports to `health`; decides Approve/Deny clicks |
//! | 8 | `admin`, `callbacks` | HTTP endpoints over `health` and `metrics`; the chat callback listener |
//! | 9 | `app` | wires everything for one process |
//! | 10 | `k8s`, `demo` | edges: Kubernetes watchers, the simulated demo |
//! | 11 | `cli` | the command line |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("metrics", 0),
    ("timefmt", 0),
    ("identity", 1),
    ("config", 2),
    ("logging", 3),
    ("teleport", 4),
    ("pb", 0),
    ("chat", 5),
    ("health", 6),
    ("engine", 7),
    ("review", 7),
    ("admin", 8),
    ("callbacks", 8),
    ("app", 9),
    ("k8s", 10),
    ("demo", 10),
    ("cli", 11),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None` for the crate
/// roots).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
    (first != "lib" && first != "main").then_some(first)
}

/// The file's code without its unit tests: a `tests.rs` file (or one under a
/// `tests/` folder) is all test code, elsewhere everything from the first
/// `#[cfg(test)]` on is.
fn production_code(path: &Path) -> String {
    let is_test_file = path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests");
    if is_test_file {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Modules named as `crate::<module>` in `code` (comments skipped).
fn crate_refs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
            rest = after;
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut missing: Vec<String> = files.iter().filter_map(|f| module_of(f)).filter(|m| layer(m).is_none()).collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "give these modules a layer in tests/layers.rs: {missing:?}");
}

#[test]
fn modules_depend_only_downwards() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        let Some(own) = layer(&module) else { continue };
        for used in crate_refs(&production_code(file)) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                _ => violations
                    .entry(format!("{} ({module}, layer {own})", file.display()))
                    .or_default()
                    .push(format!("{used} (layer {:?})", layer(&used))),
            }
        }
    }
    assert!(violations.is_empty(), "imports that point upwards or sideways: {violations:#?}");
}

#[test]
fn only_the_demo_uses_the_simulators() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| module_of(f).as_deref() != Some("demo"))
        .filter(|f| {
            let code = production_code(f);
            code.contains("teleport_plugin_sim") || code.contains("crate::sim")
        })
        .collect();
    assert!(offenders.is_empty(), "product code importing the simulators: {offenders:?}");
    assert!(!src().join("sim").exists(), "simulators live in the sim/ crate, not in src/");
}

#[test]
fn the_checker_sees_a_violation() {
    // The scanner itself: an upward import in ordinary code is found, one in a
    // comment is not.
    assert_eq!(crate_refs("use crate::engine::x;\n// crate::cli\nlet a = crate::chat::y();"), ["engine", "chat"]);
}
