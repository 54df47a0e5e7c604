//! Builds the kernel programs (`tracer-ebpf`) for the BPF target and leaves the object in
//! OUT_DIR, where `include_bytes_aligned!` embeds it in the `wsltrace` binary, without its
//! DWARF.
use std::path::Path;

use anyhow::Context as _;
use aya_build::{Package, Toolchain};
use object::build::elf::{Builder, SectionData};

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
    )?;
    let object = Path::new(&std::env::var("OUT_DIR")?).join("tracer-ebpf");
    strip_dwarf(&object).with_context(|| format!("stripping {}", object.display()))
}

/// Drops the DWARF sections and their relocations from the object, in place. bpf-linker
/// needs debug info to write the BTF, which stays (`.BTF`, `.BTF.ext`: func and line info);
/// the DWARF itself is never read by aya or the kernel, yet was half of the 15 MB object
/// that every start parsed and kept resident.
fn strip_dwarf(path: &Path) -> anyhow::Result<()> {
    let data = std::fs::read(path)?;
    let mut elf = Builder::read(&*data)?;
    let is_dwarf = |name: &[u8]| name.starts_with(b".debug_");
    // Collected as they are marked: the table's iterators pass over deleted sections.
    let mut deleted = Vec::new();
    for section in elf.sections.iter_mut().filter(|s| is_dwarf(&s.name)) {
        section.delete = true;
        deleted.push(section.id());
    }
    for section in elf.sections.iter_mut() {
        if section.sh_info_section.is_some_and(|target| deleted.contains(&target)) {
            section.delete = true;
        }
    }
    elf.delete_orphans();
    // LLVM names sections from the symbols' `.strtab`; the writer wants a table of its own.
    if !elf.sections.iter().any(|s| matches!(s.data, SectionData::SectionString)) {
        let names = elf.sections.add();
        names.name = b".shstrtab"[..].into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.data = SectionData::SectionString;
    }
    let mut out = Vec::with_capacity(data.len());
    elf.write(&mut out)?;
    std::fs::write(path, out)?;
    Ok(())
}
