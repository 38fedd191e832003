//! The YAML configuration loader on any text: never a panic, errors list
//! their problems, loaded configurations are coherent and show no token.

#![no_main]

use libfuzzer_sys::fuzz_target;
use teleport_plugin::config::Format;
use teleport_plugin_fuzz::load_and_check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = load_and_check(text, Format::Yaml);
});
