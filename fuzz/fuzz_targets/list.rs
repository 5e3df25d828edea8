//! The list-file parser (raw bytes, as read from disk): entries or bad lines, never a panic;
//! every error renders, and every entry's place is inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses whether a default route may be listed.
    let Some((&flag, bytes)) = data.split_first() else {
        return;
    };
    let lines = bytes.split(|&b| b == b'\n').count();
    match steer::config::parse_list_bytes(bytes, flag & 1 == 1) {
        Ok(entries) => {
            for e in &entries {
                assert!(e.line >= 1 && e.line <= lines, "{e:?} of {lines} lines");
                assert!(e.column >= 1, "{e:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result names a line");
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines, "{e:?} of {lines} lines");
                let _ = (e.to_string(), e.message(), e.hint());
            }
        }
    }
});
