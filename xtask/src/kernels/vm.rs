//! One guest: qemu (TCG: a KVM guest hangs on this machine kind) boots the kernel with the
//! initramfs, the host's root shared read-only and a results directory shared writable; the
//! guest runs the suites and powers off.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::initramfs::GUEST_OUT;

/// A suite to run in the guest: its test binary and the tests to run (none: all).
pub struct Suite {
    pub name: String,
    pub binary: PathBuf,
    pub tests: Vec<String>,
}

pub struct Guest<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// Host directory shared writable: the script goes in, results come out.
    pub out: &'a Path,
    /// Run in this order.
    pub suites: &'a [Suite],
    /// The tests' working directory (cargo runs them in their package's directory).
    pub cwd: &'a Path,
    pub timeout: Duration,
    /// Virtual CPUs (each one a host thread under TCG).
    pub smp: usize,
}

/// How the guest ended.
pub enum Ending {
    PoweredOff,
    TimedOut,
}

impl Guest<'_> {
    /// Boots the guest and waits for it to power off (or kills it at the timeout).
    pub fn run(&self) -> Result<(Ending, Duration)> {
        let _ = fs::remove_dir_all(self.out);
        fs::create_dir_all(self.out)?;
        fs::write(self.out.join("guest.sh"), self.script())?;
        let console = fs::File::create(self.out.join("console.log"))?;
        let started = Instant::now();
        let mut qemu = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-m", "2G"])
            .args(["-smp", &self.smp.to_string()])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(self.vmlinuz)
            .arg("-initrd")
            .arg(self.initramfs)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .arg("-virtfs")
            .arg("local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap")
            .arg("-virtfs")
            .arg(format!("local,path={},mount_tag=out,security_model=none", self.out.display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        loop {
            if qemu.try_wait()?.is_some() {
                return Ok((Ending::PoweredOff, started.elapsed()));
            }
            if started.elapsed() > self.timeout {
                // Our own child, by its handle.
                let _ = qemu.kill();
                let _ = qemu.wait();
                return Ok((Ending::TimedOut, started.elapsed()));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The script the guest runs as root in the shared root: the mounts a booted system
    /// would have, loopback up, then each suite with its output, status and times.
    fn script(&self) -> String {
        let mut s = String::from(
            "#!/bin/sh\n\
             # Written by `cargo xtask kernels`; run by the guest's init.\n\
             OUT=@OUT@\n\
             cut -d' ' -f1 /proc/uptime > $OUT/booted\n\
             uname -r > $OUT/release\n\
             mount -t tracefs tracefs /sys/kernel/tracing\n\
             mount -t bpf bpf /sys/fs/bpf\n\
             mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
             ip link set lo up || busybox ip link set lo up\n",
        )
        .replace("@OUT@", GUEST_OUT);
        s += &format!("cd '{}'\n", self.cwd.display());
        for Suite { name, binary, tests } in self.suites {
            let exact = if tests.is_empty() {
                String::new()
            } else {
                format!(" --exact {}", tests.join(" "))
            };
            // CI's bare environment, as on the host.
            s += &format!(
                "cut -d' ' -f1 /proc/uptime > $OUT/{name}.start\n\
                 env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                 '{}' --test-threads=2{exact} > $OUT/{name}.log 2>&1\n\
                 echo $? > $OUT/{name}.status\n\
                 cut -d' ' -f1 /proc/uptime > $OUT/{name}.end\n",
                binary.display()
            );
        }
        s += "sync\n/bin/busybox poweroff -f\n";
        s
    }
}
