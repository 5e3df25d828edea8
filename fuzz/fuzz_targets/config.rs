//! The configuration parser: any text, valid or not, is a configuration or located errors,
//! never a panic. Errors are rendered too (their positions index into the text).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative list files resolve against a directory that does not exist.
    match steer::config::parse(text, Path::new("/nonexistent/steer-fuzz/steer.toml")) {
        Ok(config) => {
            let _ = steer::config::notes(&config);
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
