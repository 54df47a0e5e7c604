//! Errno names and messages, including the kernel-internal restart codes that the exit
//! tracepoints see when a blocking call is interrupted by a signal.

use std::{collections::HashMap, fmt, sync::LazyLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub u16);

/// Codes from include/linux/errno.h that never reach userspace but do reach sys_exit.
const KERNEL_INTERNAL: &[(u16, &str, &str)] = &[
    (512, "ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    (513, "ERESTARTNOINTR", "To be restarted"),
    (514, "ERESTARTNOHAND", "To be restarted if no handler"),
    (515, "ENOIOCTLCMD", "No ioctl command"),
    (516, "ERESTART_RESTARTBLOCK", "Interrupted by signal"),
    (517, "EPROBE_DEFER", "Driver requests probe retry"),
    (518, "EOPENSTALE", "Open found a stale dentry"),
    (519, "ENOPARAM", "Parameter not supported"),
    (521, "EBADHANDLE", "Illegal NFS file handle"),
    (522, "ENOTSYNC", "Update synchronization mismatch"),
    (523, "EBADCOOKIE", "Cookie is stale"),
    (524, "ENOTSUPP", "Operation is not supported"),
    (525, "ETOOSMALL", "Buffer or request is too small"),
    (526, "ESERVERFAULT", "An untranslatable error occurred"),
    (527, "EBADTYPE", "Type not supported by server"),
    (528, "EJUKEBOX", "Request initiated, but will not complete before timeout"),
    (529, "EIOCBQUEUED", "iocb queued, will get completion event"),
    (530, "ERECALLCONFLICT", "Conflict with recalled state"),
];

/// Alternative spellings accepted on the command line.
const ALIASES: &[(&str, u16)] = &[("EWOULDBLOCK", 11), ("EDEADLOCK", 35), ("ENOTSUP", 95)];

struct Entry {
    name: &'static str,
    message: &'static str,
}

static TABLE: LazyLock<HashMap<u16, Entry>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    // nix knows the userspace errnos (1..=133 on Linux): its variant names are the errno names.
    for code in 1..=200_u16 {
        let errno = nix::errno::Errno::from_raw(code.into());
        if errno == nix::errno::Errno::UnknownErrno {
            continue;
        }
        let name: &'static str = format!("{errno:?}").leak();
        let message = super::strerror::GLIBC.get(usize::from(code) - 1).copied();
        table.insert(code, Entry { name, message: message.unwrap_or(errno.desc()) });
    }
    for &(code, name, message) in KERNEL_INTERNAL {
        table.insert(code, Entry { name, message });
    }
    table
});

static BY_NAME: LazyLock<HashMap<&'static str, u16>> = LazyLock::new(|| {
    let mut by_name: HashMap<&'static str, u16> =
        TABLE.iter().map(|(code, entry)| (entry.name, *code)).collect();
    by_name.extend(ALIASES.iter().copied());
    by_name
});

impl Errno {
    /// The errno of a syscall return value, if it is an error (-4095..=-1).
    pub fn from_ret(ret: i64) -> Option<Errno> {
        (-4095..0).contains(&ret).then(|| Errno((-ret) as u16))
    }

    /// `ECONNREFUSED`; `E1234` for a code without a name.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match TABLE.get(&self.0) {
            Some(entry) => entry.name.into(),
            None => format!("E{}", self.0).into(),
        }
    }

    /// `Connection refused`.
    pub fn message(self) -> &'static str {
        TABLE.get(&self.0).map_or("Unknown error", |e| e.message)
    }

    /// Parses `ECONNREFUSED`, `econnrefused`, `111`, or `E4000` (how [`Errno::name`] writes a
    /// code without a name).
    pub fn parse(s: &str) -> Result<Errno, String> {
        let s = s.trim();
        let upper = s.to_ascii_uppercase();
        let number = upper.strip_prefix('E').unwrap_or(&upper);
        if let Ok(code) = number.parse::<u16>() {
            return match code {
                1..=4095 => Ok(Errno(code)),
                _ => Err(format!("errno {code} is out of range (1-4095)")),
            };
        }
        if let Some(code) = BY_NAME.get(upper.as_str()) {
            return Ok(Errno(*code));
        }
        let hint = BY_NAME
            .keys()
            .map(|name| (strsim::levenshtein(name, &upper), *name))
            .min()
            .filter(|(distance, _)| *distance <= 2)
            .map(|(_, name)| format!(" (did you mean {name}?)"))
            .unwrap_or_default();
        Err(format!("unknown errno name '{s}'{hint}: use a name like ECONNREFUSED or a number"))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Errno, D::Error> {
        let name = String::deserialize(d)?;
        match name.strip_prefix('E').and_then(|n| n.parse::<u16>().ok()) {
            Some(code) => Ok(Errno(code)),
            None => Errno::parse(&name).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the cli_values fuzz target: `-e 4095` was shown as `E4095`, which `-e` refused.
    #[test]
    fn names_of_codes_without_one_parse_back() {
        assert_eq!(Errno::parse("4095"), Ok(Errno(4095)));
        assert_eq!(Errno::parse(&Errno(4095).name()), Ok(Errno(4095)));
        assert_eq!(Errno::parse("e4000"), Ok(Errno(4000)));
        assert!(Errno::parse("E4096").is_err());
        // A name made of E and digits is still a name.
        assert_eq!(Errno::parse("E2BIG"), Ok(Errno(7)));
    }

    #[test]
    fn names_and_messages() {
        assert_eq!(Errno(111).name(), "ECONNREFUSED");
        assert_eq!(Errno(111).message(), "Connection refused");
        assert_eq!(Errno(92).name(), "ENOPROTOOPT");
        assert_eq!(Errno(107).name(), "ENOTCONN");
        assert_eq!(Errno(512).name(), "ERESTARTSYS");
        assert_eq!(Errno(4000).name(), "E4000");
    }

    #[test]
    fn messages_are_the_c_librarys() {
        assert_eq!(Errno(11).message(), "Resource temporarily unavailable");
        for code in 1..=133_u16 {
            if !TABLE.contains_key(&code) {
                continue;
            }
            let mut buf = [0_u8; 256];
            // SAFETY: the buffer and its length are valid; strerror_r writes a NUL-terminated
            // string into it.
            let rc = unsafe { libc::strerror_r(code.into(), buf.as_mut_ptr().cast(), buf.len()) };
            assert_eq!(rc, 0);
            let c = std::ffi::CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy());
            assert_eq!(c.as_deref().ok(), Some(Errno(code).message()), "errno {code}");
        }
    }

    #[test]
    fn from_ret_only_for_errors() {
        assert_eq!(Errno::from_ret(-111), Some(Errno(111)));
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(5), None);
        assert_eq!(Errno::from_ret(-4096), None);
    }

    #[test]
    fn parses_names_numbers_and_aliases() {
        assert_eq!(Errno::parse("ECONNREFUSED"), Ok(Errno(111)));
        assert_eq!(Errno::parse("enotconn"), Ok(Errno(107)));
        assert_eq!(Errno::parse("111"), Ok(Errno(111)));
        assert_eq!(Errno::parse("EWOULDBLOCK"), Ok(Errno(11)));
        assert_eq!(Errno::parse("ERESTARTSYS"), Ok(Errno(512)));
    }

    #[test]
    fn suggests_close_names() {
        let err = Errno::parse("ECONNREFUSD").unwrap_err();
        assert!(err.contains("did you mean ECONNREFUSED?"), "{err}");
        assert!(Errno::parse("0").is_err());
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&Errno(13)).unwrap();
        assert_eq!(json, "\"EACCES\"");
        assert_eq!(serde_json::from_str::<Errno>(&json).unwrap(), Errno(13));
        assert_eq!(serde_json::from_str::<Errno>("\"E4000\"").unwrap(), Errno(4000));
    }
}
