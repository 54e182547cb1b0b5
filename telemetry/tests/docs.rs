//! `docs/metrics.md` is the catalogue's reference table, generated: this fails when they
//! differ. Regenerate with `HVNET_BLESS=1 cargo test -p telemetry --test docs`.

use std::path::Path;

#[test]
fn docs_metrics_md_is_the_generated_reference_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let generated = telemetry::catalogue::markdown();
    if std::env::var_os("HVNET_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing docs/metrics.md");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/metrics.md differs from the catalogue (telemetry/src/catalogue.rs); regenerate it \
         with: HVNET_BLESS=1 cargo test -p telemetry --test docs"
    );
}
