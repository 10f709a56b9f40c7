//! The JSON form of audience definitions: whatever is accepted reads back from its stored
//! form, prints as text that parses to the same tree, and evaluates without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parcours_core::audience;
use serde_json::Value;

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(c) = audience::from_json(&value) {
        common::json_round_trip(&c);
        let printed = c.to_string();
        assert_eq!(
            audience::parse(&printed).as_ref(),
            Ok(&c),
            "{printed}"
        );
        common::evaluate(&c);
    }
});
