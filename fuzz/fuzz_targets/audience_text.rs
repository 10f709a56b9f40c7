//! The text form of audience definitions: whatever parses prints back as the same tree, has
//! the same JSON form, and evaluates without panicking; nothing may overflow the stack.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parcours_core::audience::{self, Condition};

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = audience::parse(text) {
        let printed = c.to_string();
        let again: Condition = audience::parse(&printed)
            .unwrap_or_else(|e| panic!("printed form does not parse: {printed}: {e}"));
        assert_eq!(again, c, "{printed}");
        common::json_round_trip(&c);
        common::evaluate(&c);
    }
});
