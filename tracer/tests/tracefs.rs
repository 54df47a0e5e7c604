//! tracefs is not mounted on a fresh machine: wsltrace mounts it. (A test binary of its own:
//! cargo runs test binaries one after the other, so no other test sees tracefs unmounted.)

mod common;

use std::path::Path;

#[test]
fn mounts_tracefs_when_missing() {
    let events = Path::new("/sys/kernel/tracing/events");
    while events.exists() {
        nix::mount::umount("/sys/kernel/tracing").expect("unmount tracefs for the test");
    }
    let out = common::trace(&["demo", "refused"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("wsltrace: mounted tracefs at /sys/kernel/tracing"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("ECONNREFUSED"));
    assert!(events.exists());
}
