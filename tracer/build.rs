//! Builds the kernel programs (`tracer-ebpf`) for the BPF target and leaves the object in
//! OUT_DIR, where `include_bytes_aligned!` embeds it in the `wsltrace` binary.
use std::path::Path;

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // Read at run time: a build script compiled in one checkout and reused from a copied
    // target/ must still build the programs of the checkout it runs for.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("tracer/ has no parent directory"))?;
    let ebpf_dir = root.join("tracer-ebpf");
    // The programs also depend on the shared record layouts.
    println!("cargo:rerun-if-changed={}", root.join("tracer-common/src").display());
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [Package { name: "tracer-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        Toolchain::default(),
    )
}
