//! `scriptbox::fuzz::fetch_policy`: see its documentation for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = scriptbox::fuzz::fetch_policy(data) {
        panic!("{violation}");
    }
});
