//! The control socket's request decoding (one line from a local client): a request or an
//! error, never a panic; a decoded request survives the way back to JSON unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steer::control::proto::Request;

fuzz_target!(|data: &[u8]| {
    match serde_json::from_slice::<Request>(data) {
        Ok(request) => {
            let json = serde_json::to_vec(&request).expect("a request serializes");
            let again: Request = serde_json::from_slice(&json).expect("its own JSON decodes");
            assert_eq!(again, request);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
