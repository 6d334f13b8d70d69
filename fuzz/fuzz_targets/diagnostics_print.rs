//! The diagnostics printer of `kubeha check` on whatever the loader makes of any bytes, in both modes: plain
//! lines (not a terminal) and lines with quoted snippets (a terminal). Neither may panic, and both print
//! every finding's grep-able line.
#![no_main]
use kubeha::cli::report::render_diagnostics;
use kubeha::inventory::{PathContext, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let paths = PathContext { inventory_dir: ".".into(), home: None };
    let loaded = parse_bytes("fuzz.yaml".into(), data.to_vec(), &paths);
    let plain = render_diagnostics(&loaded, &loaded.diagnostics, false);
    let tty = render_diagnostics(&loaded, &loaded.diagnostics, true);
    for d in &loaded.diagnostics {
        let line = d.located(&loaded.file);
        assert!(plain.contains(&line) && tty.contains(&line), "finding missing from the output: {line}");
    }
});
