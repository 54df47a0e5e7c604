//! Opening recording files safely. wsltrace runs as root, often in directories other users
//! can write to (/tmp): it must not be tricked into writing through a link planted at the
//! output path, nor into someone else's file. So a file is created with O_CREAT|O_EXCL (which
//! also refuses any link, dangling or not, in one atomic step: there is no window between a
//! check and the open) unless --append is given; with --append an existing file is opened
//! with O_NOFOLLOW and must be a regular file with one link, belonging to the invoking user
//! (or root). Under sudo, a file wsltrace creates is handed to the user who ran sudo.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

use anyhow::{Result, bail};
use nix::unistd::{Gid, Uid};

/// Traces hold addresses, paths and credentials: readable by their owner only.
const MODE: u32 = 0o600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The file must not exist.
    CreateNew,
    /// Create it, or add to it if it exists and is safe to add to.
    Append,
}

/// An opened output file.
pub struct Opened {
    pub file: File,
    /// Its size when opened: 0 for a file wsltrace created.
    pub len: u64,
}

/// The user who ran `sudo wsltrace`: SUDO_UID and SUDO_GID, when we run as root.
pub fn sudo_user() -> Option<(Uid, Option<Gid>)> {
    if !Uid::effective().is_root() {
        return None;
    }
    let id = |var| std::env::var(var).ok().and_then(|v| v.trim().parse::<u32>().ok());
    Some((Uid::from_raw(id("SUDO_UID")?), id("SUDO_GID").map(Gid::from_raw)))
}

pub fn open(path: &Path, mode: Mode) -> Result<Opened> {
    match create_new(path) {
        Ok(file) => {
            give_to_sudo_user(&file, path)?;
            Ok(Opened { file, len: 0 })
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            if is_symlink(path) || mode == Mode::CreateNew {
                return Err(taken(path));
            }
            open_existing(path)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => bail!(
            "cannot create {}: its directory does not exist: create it first or choose another path",
            path.display()
        ),
        Err(err) => bail!("cannot create {}: {err}: choose another path", path.display()),
    }
}

/// Fails early, with the message [`open`] would give, when `path` is taken. A courtesy
/// before a slow start: the check that counts is the O_EXCL of [`open`].
pub fn check_new(path: &Path) -> Result<()> {
    match path.symlink_metadata() {
        Ok(_) => Err(taken(path)),
        Err(_) => Ok(()),
    }
}

fn taken(path: &Path) -> anyhow::Error {
    if is_symlink(path) {
        anyhow::anyhow!(
            "{} is a symbolic link: wsltrace never writes through links; give the path of a new file",
            path.display()
        )
    } else {
        anyhow::anyhow!(
            "{} already exists: wsltrace only writes files it creates; choose a new name, remove it, or add --append",
            path.display()
        )
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    // create_new is O_CREAT|O_EXCL, which never follows a symbolic link at `path`.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// --append to a file that exists: only a regular file of ours with a single link.
fn open_existing(path: &Path) -> Result<Opened> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        // O_NONBLOCK: opening a FIFO planted at the path must not hang; it has no effect on
        // the regular files that pass the checks below.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => bail!(
            "{} is a symbolic link: wsltrace never writes through links; give the real path",
            path.display()
        ),
        Err(err) => bail!("cannot open {} to append to it: {err}", path.display()),
    };
    // fstat of the opened file, not the path: what we checked is what we write to.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        bail!("{} is not a regular file: give the path of a recording to --append", path.display());
    }
    if meta.nlink() > 1 {
        bail!(
            "{} has {} hard links: wsltrace does not append to a file that may be someone else's; record to a new file",
            path.display(),
            meta.nlink()
        );
    }
    let me = sudo_user().map_or_else(Uid::current, |(uid, _)| uid);
    if meta.uid() != me.as_raw() && meta.uid() != 0 {
        bail!(
            "{} belongs to uid {}, not to you (uid {me}): wsltrace appends only to your own files; record to a new file",
            path.display(),
            meta.uid()
        );
    }
    Ok(Opened { file, len: meta.len() })
}

fn give_to_sudo_user(file: &File, path: &Path) -> Result<()> {
    if let Some((uid, gid)) = sudo_user() {
        // fchown on the descriptor: the file we created, whatever happens to the path.
        nix::unistd::fchown(file, Some(uid), gid).map_err(|err| {
            anyhow::anyhow!("cannot give {} to uid {uid} (SUDO_UID): {err}", path.display())
        })?;
    }
    Ok(())
}

fn is_symlink(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wsltrace-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn creates_only_new_files() {
        let dir = dir("new");
        let path = dir.join("a.jsonl");
        let mut opened = open(&path, Mode::CreateNew).unwrap();
        assert_eq!(opened.len, 0);
        opened.file.write_all(b"x\n").unwrap();
        assert_eq!(path.metadata().unwrap().mode() & 0o777, 0o600);
        let err = open(&path, Mode::CreateNew).err().unwrap().to_string();
        assert!(err.contains("already exists") && err.contains("--append"), "{err}");
        assert_eq!(check_new(&path).err().unwrap().to_string(), err);
        assert!(check_new(&dir.join("b.jsonl")).is_ok());
        assert_eq!(open(&path, Mode::Append).unwrap().len, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_links() {
        let dir = dir("links");
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.join("dangling.jsonl");
        std::os::unix::fs::symlink(dir.join("nothing"), &dangling).unwrap();
        for mode in [Mode::CreateNew, Mode::Append] {
            for path in [&link, &dangling] {
                let err = open(path, mode).err().unwrap().to_string();
                assert!(err.contains("symbolic link"), "{err}");
            }
        }
        assert!(!dir.join("nothing").exists());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let hard = dir.join("hard.jsonl");
        std::fs::hard_link(&target, &hard).unwrap();
        let err = open(&hard, Mode::Append).err().unwrap().to_string();
        assert!(err.contains("hard links"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
