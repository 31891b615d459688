//! `scriptbox::fuzz::webhook_auth`: see its documentation for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = scriptbox::fuzz::webhook_auth(data) {
        panic!("{violation}");
    }
});
