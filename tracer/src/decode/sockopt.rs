//! getsockopt/setsockopt value decoding, by (level, optname).

use super::{
    errno::Errno,
    names::{self, SO_DOMAIN, SO_ERROR, SO_LINGER, SO_PEERCRED, SO_PROTOCOL, SO_TYPE, SOL_SOCKET},
    sockaddr::hex,
};
use crate::event::OptValue;

// Options whose value is a struct timeval (SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD).
const SO_RCVTIMEO_OLD: i64 = 20;
const SO_SNDTIMEO_OLD: i64 = 21;

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes `bytes` (what was copied) of a value whose true length is `len`.
pub fn decode(level: i64, optname: i64, bytes: &[u8], len: u32) -> OptValue {
    let truncated = (bytes.len() as u64) < u64::from(len);
    let decoded = if truncated { None } else { decode_known(level, optname, bytes) };
    decoded.unwrap_or_else(|| OptValue::Bytes { hex: hex(bytes), truncated })
}

fn decode_known(level: i64, optname: i64, b: &[u8]) -> Option<OptValue> {
    if level == SOL_SOCKET {
        match optname {
            // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
            SO_PEERCRED if b.len() == 12 => {
                return Some(OptValue::Cred {
                    pid: i32_at(b, 0)?,
                    uid: i32_at(b, 4)? as u32,
                    gid: i32_at(b, 8)? as u32,
                });
            }
            SO_ERROR if b.len() == 4 => {
                let code = i32_at(b, 0)?;
                return Some(match code {
                    0 => OptValue::Int(0),
                    c => OptValue::Name(Errno(c.unsigned_abs() as u16).name()),
                });
            }
            SO_TYPE if b.len() == 4 => {
                let t = i64::from(i32_at(b, 0)?);
                return Some(OptValue::Name(names::name_or_number(names::SOCK_TYPES, t)));
            }
            SO_DOMAIN if b.len() == 4 => {
                let f = i64::from(i32_at(b, 0)?);
                return Some(OptValue::Name(names::name_or_number(names::FAMILIES, f)));
            }
            SO_PROTOCOL if b.len() == 4 => {
                let p = i64::from(i32_at(b, 0)?);
                return Some(OptValue::Name(names::name_or_number(names::IP_PROTOCOLS, p)));
            }
            // struct linger { int l_onoff; int l_linger; }
            SO_LINGER if b.len() == 8 => {
                return Some(OptValue::Linger { onoff: i32_at(b, 0)?, linger: i32_at(b, 4)? });
            }
            SO_RCVTIMEO_OLD | SO_SNDTIMEO_OLD if b.len() == 16 => {
                return Some(OptValue::Timeval { sec: i64_at(b, 0)?, usec: i64_at(b, 8)? });
            }
            _ => {}
        }
    }
    // Most options are a plain int (booleans included: SO_REUSEADDR, TCP_NODELAY...).
    match b.len() {
        4 => Some(OptValue::Int(i32_at(b, 0)?.into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn peercred() {
        assert_eq!(
            decode(1, 17, &ints(&[42, 1000, 100]), 12),
            OptValue::Cred { pid: 42, uid: 1000, gid: 100 }
        );
    }

    #[test]
    fn so_error_type_domain() {
        assert_eq!(decode(1, 4, &ints(&[111]), 4), OptValue::Name("ECONNREFUSED".into()));
        assert_eq!(decode(1, 4, &ints(&[0]), 4), OptValue::Int(0));
        assert_eq!(decode(1, 3, &ints(&[1]), 4), OptValue::Name("SOCK_STREAM".into()));
        assert_eq!(decode(1, 39, &ints(&[10]), 4), OptValue::Name("AF_INET6".into()));
    }

    #[test]
    fn ints_and_bools() {
        assert_eq!(decode(1, 8, &ints(&[212992]), 4), OptValue::Int(212992)); // SO_RCVBUF
        assert_eq!(decode(1, 2, &ints(&[1]), 4), OptValue::Int(1)); // SO_REUSEADDR
        assert_eq!(decode(1, 30, &ints(&[1]), 4), OptValue::Int(1)); // SO_ACCEPTCONN
        assert_eq!(decode(6, 1, &ints(&[1]), 4), OptValue::Int(1)); // TCP_NODELAY
    }

    #[test]
    fn linger_and_timeval() {
        assert_eq!(decode(1, 13, &ints(&[1, 5]), 8), OptValue::Linger { onoff: 1, linger: 5 });
        let tv: Vec<u8> = [3_i64, 500].iter().flat_map(|x| x.to_ne_bytes()).collect();
        assert_eq!(decode(1, 20, &tv, 16), OptValue::Timeval { sec: 3, usec: 500 });
    }

    #[test]
    fn truncated_and_unknown_values_stay_hex() {
        assert_eq!(
            decode(6, 11, &[1, 2], 232),
            OptValue::Bytes { hex: "0102".into(), truncated: true }
        );
        assert_eq!(
            decode(1, 17, &[1, 2, 3], 3),
            OptValue::Bytes { hex: "010203".into(), truncated: false }
        );
    }
}
