//! The inventory loader on any bytes: it must never panic, and every finding's mark must be a usable byte
//! offset into the text it reports on (a character offset there made `kubeha check` panic, issue 12 #11).
#![no_main]
use kubeha::inventory::{PathContext, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let paths = PathContext { inventory_dir: ".".into(), home: None };
    let loaded = parse_bytes("fuzz.yaml".into(), data.to_vec(), &paths);
    for d in &loaded.diagnostics {
        if let Some(mark) = d.mark {
            assert!(mark.offset <= loaded.source.len(), "offset {} past the end ({} bytes): {d:?}", mark.offset, loaded.source.len());
            assert!(loaded.source.is_char_boundary(mark.offset), "offset {} inside a character: {d:?}", mark.offset);
        }
    }
    assert!(loaded.inventory.is_none() || !loaded.diagnostics.iter().any(|d| d.is_error()), "a valid inventory with errors");
});
