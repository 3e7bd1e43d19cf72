//! The configuration loader, fed arbitrary bytes as a config file. It
//! must never panic: every mistake becomes a problem with a location.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("fieldgate-fuzz-{}.toml", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    match fieldgate::config::load_with_env(&path, &[]) {
        Ok(_) => {}
        Err(problems) => assert!(problems.has_errors()),
    }
});
