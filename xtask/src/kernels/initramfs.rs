//! The guest's initramfs: a static busybox, the kernel's own modules for virtio, 9p and
//! overlayfs, and an init that mounts the host's root (shared read-only over 9p) under a
//! tmpfs overlay and runs the test script in it. The host's files, python3, curl and the
//! test binaries included, are then the guest's.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::run_cmd;

/// What the guest needs before the root is mounted; their dependencies come along.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Loaded too when the kernel has them as modules (a booted system autoloads them with
/// modprobe; the guest has no module tree): the socket tables wsltrace reads over sock_diag,
/// and AF_VSOCK, whose socket() the demo workload makes.
const OPTIONAL_MODULES: &[&str] =
    &["inet_diag", "tcp_diag", "udp_diag", "unix_diag", "vsock", "vsock_loopback"];

/// Where the results share is mounted in the guest (the script is read from it too).
pub const GUEST_OUT: &str = "/run/wsltrace-kernels";

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do
    insmod "$m" || echo "init: insmod $m failed"
done
fail() { echo "init: $*"; poweroff -f; }
mkdir -p /lower /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 root /lower \
    || fail "cannot mount the host's root over 9p (virtio-pci, 9p, 9pnet_virtio missing?)"
mount -t tmpfs tmpfs /upper
mkdir /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot \
    || fail "cannot mount an overlay over the host's root (overlayfs missing?)"
# The host's /run and /tmp hold its sockets (nscd, ...): the guest gets its own.
mount -t tmpfs tmpfs /newroot/run
mount -t tmpfs tmpfs /newroot/tmp
# A workspace under them (a clone in /tmp) is brought back, writable as the rest.
case "@WS@" in /tmp/*|/run/*)
    mkdir -p /newroot@WS@ /upper/wsu /upper/wsw
    mount -t overlay overlay -o lowerdir=/lower@WS@,upperdir=/upper/wsu,workdir=/upper/wsw \
        /newroot@WS@ || fail "cannot mount the workspace @WS@ over the guest's own /tmp or /run";;
esac
mkdir -p /newroot@OUT@
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /newroot@OUT@ || fail "cannot mount the results share"
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec chroot /newroot /bin/sh @OUT@/guest.sh
"#;

/// Writes `initramfs.cpio` into `dir` for the kernel whose modules are in `modules` (none:
/// what the guest needs is built in); `workspace` is where the test binaries are.
pub fn build(dir: &Path, modules: Option<&Path>, workspace: &Path) -> Result<PathBuf> {
    let tree = dir.join("initramfs");
    let _ = fs::remove_dir_all(&tree);
    for d in ["bin", "modules", "proc", "sys", "dev"] {
        fs::create_dir_all(tree.join(d))?;
    }
    fs::copy(static_busybox()?, tree.join("bin/busybox"))?;
    let init = tree.join("init");
    let workspace = workspace.to_str().context("the workspace path is not UTF-8")?;
    fs::write(&init, INIT.replace("@OUT@", GUEST_OUT).replace("@WS@", workspace))?;
    set_executable(&init)?;
    if let Some(modules) = modules {
        let index = ModuleIndex::new(modules)?;
        let optional = OPTIONAL_MODULES.iter().filter(|m| index.files.contains_key(**m));
        let wanted: Vec<&str> = MODULES.iter().chain(optional).copied().collect();
        for (i, name) in index.load_order(&wanted)?.iter().enumerate() {
            let bytes = index.read(name)?;
            fs::write(tree.join("modules").join(format!("{i:02}-{name}.ko")), bytes)?;
        }
    }
    let cpio = dir.join("initramfs.cpio");
    // The kernel takes an uncompressed newc archive.
    run_cmd(
        Command::new("sh")
            .current_dir(&tree)
            .arg("-c")
            .arg(format!("find . | cpio --quiet -o -H newc > '{}'", cpio.display())),
    )?;
    Ok(cpio)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

/// busybox-static's binary: a dynamic busybox would find no libc in the initramfs.
fn static_busybox() -> Result<&'static Path> {
    let path = Path::new("/bin/busybox");
    let ok = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "busybox-static"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if !ok || !path.exists() {
        bail!("busybox-static is not installed");
    }
    Ok(path)
}

/// The modules of one kernel tree, by name (`-` and `_` are the same to the kernel).
struct ModuleIndex {
    files: HashMap<String, PathBuf>,
    builtin: String,
}

impl ModuleIndex {
    fn new(root: &Path) -> Result<ModuleIndex> {
        let mut files = HashMap::new();
        let mut stack = vec![root.join("kernel")];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(name) = module_name(&path) {
                    files.insert(name, path);
                }
            }
        }
        // Without modules.builtin every missing module would be an error.
        let builtin = fs::read_to_string(root.join("modules.builtin")).unwrap_or_default();
        Ok(ModuleIndex { files, builtin })
    }

    /// `wanted` and what they depend on, dependencies first; built-in ones are left out.
    fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        for name in wanted {
            self.visit(&normalize(name), &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(&self, name: &str, order: &mut Vec<String>, depth: usize) -> Result<()> {
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        if depth > 32 {
            bail!("module dependencies of {name} loop");
        }
        if !self.files.contains_key(name) {
            if self.is_builtin(name) {
                return Ok(());
            }
            bail!("module {name} is neither in the kernel's modules nor built in");
        }
        for dep in depends(&self.read(name)?) {
            self.visit(&dep, order, depth + 1)?;
        }
        order.push(name.to_owned());
        Ok(())
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.builtin.lines().filter_map(|l| module_name(Path::new(l))).any(|n| n == name)
    }

    /// The module's ELF, decompressed (busybox's insmod takes plain files).
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = &self.files[name];
        let tool = match path.extension().and_then(|e| e.to_str()) {
            Some("xz") => "xz",
            Some("zst") => "zstd",
            Some("gz") => "gzip",
            _ => return fs::read(path).with_context(|| format!("reading {}", path.display())),
        };
        let out = Command::new(tool)
            .arg("-dc")
            .arg(path)
            .output()
            .with_context(|| format!("running {tool} -dc {}", path.display()))?;
        if !out.status.success() {
            bail!("{tool} -dc {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(out.stdout)
    }
}

/// `9pnet_virtio` for `.../9pnet_virtio.ko` or `.ko.xz`.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|s| file.strip_suffix(s))?;
    Some(normalize(stem))
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The `depends=` entry of a module's `.modinfo` section.
fn depends(elf: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = elf.windows(KEY.len()).position(|w| w == KEY) else { return Vec::new() };
    let value = &elf[at + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(normalize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_reads_the_modinfo_entry() {
        let elf = b"\x7fELF...\0license=GPL\0depends=virtio,9pnet,virtio_ring\0name=x\0";
        assert_eq!(depends(elf), ["virtio", "9pnet", "virtio_ring"]);
        assert!(depends(b"\0depends=\0name=x\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }

    #[test]
    fn module_names_drop_the_compression_and_dashes() {
        assert_eq!(
            module_name(Path::new("kernel/net/9p/9pnet_virtio.ko.xz")).unwrap(),
            "9pnet_virtio"
        );
        assert_eq!(
            module_name(Path::new("kernel/drivers/virtio/virtio-pci.ko")).unwrap(),
            "virtio_pci"
        );
        assert_eq!(module_name(Path::new("kernel/fs/9p/9p.txt")), None);
    }
}
