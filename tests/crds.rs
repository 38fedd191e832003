//! The CRD shipped in `crds/` (and in every chart) is what the code defines.

use std::path::Path;

use teleport_plugin::k8s::crd::crd_yaml;

#[test]
fn crds_directory_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("crds/accessrequestroutes.yaml"))
        .expect("crds/accessrequestroutes.yaml exists");
    assert_eq!(
        shipped,
        crd_yaml(),
        "crds/accessrequestroutes.yaml is stale: regenerate it with `cargo run -- crdgen > crds/accessrequestroutes.yaml`"
    );
}

#[test]
fn chart_copies_match_the_crds_directory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("crds/accessrequestroutes.yaml")).unwrap();
    let charts = root.join("charts");
    let mut found: Vec<String> = std::fs::read_dir(&charts)
        .unwrap_or_else(|e| panic!("{}: {e}", charts.display()))
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "teleport-plugin-discord",
            "teleport-plugin-mattermost",
            "teleport-plugin-slack"
        ],
        "charts/ should hold exactly the three chat charts"
    );
    for chart in &found {
        let copy = charts.join(chart).join("crds/accessrequestroutes.yaml");
        let text =
            std::fs::read_to_string(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        assert_eq!(
            text,
            shipped,
            "{} differs from crds/accessrequestroutes.yaml; copy it over",
            copy.display()
        );
    }
}
