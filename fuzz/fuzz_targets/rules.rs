//! Any bytes given to the rules parser give `Ok` or a list of problems, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = clbsync::rules::parse("fuzz.yaml", &text);
});
