//! The TOML configuration loader on any text: never a panic, errors list
//! their problems, loaded configurations are coherent and show no token.
//! A TOML document that loads must load the same when written as YAML.

#![no_main]

use libfuzzer_sys::fuzz_target;
use teleport_plugin::config::Format;
use teleport_plugin_fuzz::load_and_check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let from_toml = load_and_check(text, Format::Toml);
    // The YAML loader reads the same structure: the same document in YAML
    // must give the same configuration (or fail as well).
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return;
    };
    let Ok(yaml) = serde_yaml::to_string(&doc) else {
        return;
    };
    let from_yaml = load_and_check(&yaml, Format::Yaml);
    match (&from_toml, &from_yaml) {
        (Ok(t), Ok(y)) => assert_eq!(
            format!("{t:?}"),
            format!("{y:?}"),
            "TOML and YAML disagree; YAML:\n{yaml}"
        ),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "only one loader accepts the document:\nTOML: {from_toml:?}\nYAML ({yaml}): {from_yaml:?}"
        ),
    }
});
