//! The socket fds of a process, from `/proc/PID/fd`: each link reads `socket:[INODE]`.

use std::{ffi::OsStr, io, os::unix::ffi::OsStrExt as _, path::PathBuf};

use anyhow::Result;

/// The inode in a `/proc/PID/fd/N` link target, when the fd is a socket.
pub fn parse_socket_link(target: &OsStr) -> Option<u64> {
    let rest = target.as_bytes().strip_prefix(b"socket:[")?;
    let digits = rest.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `(fd, inode)` of every socket `pid` holds, sorted by fd.
pub fn socket_fds(pid: u32) -> Result<Vec<(i32, u64)>> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let entries = std::fs::read_dir(&dir).map_err(|err| unreadable(pid, &dir, &err))?;
    let mut fds = Vec::new();
    for entry in entries {
        // An fd closed while listing is not an error: it is simply not there any more.
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(inode) = parse_socket_link(target.as_os_str())
        {
            fds.push((fd, inode));
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// The socket inode behind `fd` of `pid`; `None` when the fd is not open or not a socket.
pub fn socket_inode(pid: u32, fd: i32) -> Result<Option<u64>> {
    let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    match std::fs::read_link(&link) {
        Ok(target) => Ok(parse_socket_link(target.as_os_str())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // Either the fd or the whole process is gone: only the first is a plain "no".
            std::fs::metadata(format!("/proc/{pid}"))
                .map_err(|err| unreadable(pid, &link, &err))?;
            Ok(None)
        }
        Err(err) => Err(unreadable(pid, &link, &err)),
    }
}

/// One line: which file, why, and what to do.
fn unreadable(pid: u32, path: &std::path::Path, err: &io::Error) -> anyhow::Error {
    let fix = match err.kind() {
        io::ErrorKind::NotFound => format!("process {pid} has exited"),
        io::ErrorKind::PermissionDenied => {
            "run wsltrace as root (or as the process's owner)".to_owned()
        }
        _ => "check that /proc is mounted".to_owned(),
    };
    anyhow::anyhow!("cannot read {} ({err}): {fix}", path.display())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(parse_socket_link(OsStr::new("socket:[89117]")), Some(89117));
        assert_eq!(parse_socket_link(OsStr::new("pipe:[88269]")), None);
        assert_eq!(parse_socket_link(OsStr::new("/tmp/socket:[1]")), None);
        assert_eq!(parse_socket_link(OsStr::new("socket:[]")), None);
        assert_eq!(parse_socket_link(OsStr::new("socket:[12")), None);
    }

    #[test]
    fn finds_this_process_sockets() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = sock.as_raw_fd();
        let pid = std::process::id();
        let fds = socket_fds(pid).unwrap();
        let inode = socket_inode(pid, fd).unwrap().expect("a socket");
        assert!(fds.contains(&(fd, inode)), "{fds:?}");
        assert!(fds.windows(2).all(|w| w[0].0 < w[1].0));
        // An fd that is not open is not a socket; a process that does not exist is an error.
        assert_eq!(socket_inode(pid, 999_999).unwrap(), None);
        assert!(socket_inode(u32::MAX, 0).is_err());
        drop(sock);
    }
}
