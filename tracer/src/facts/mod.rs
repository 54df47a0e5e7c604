//! Facts about the system wsltrace runs on, in one place:
//! - the environment ([`Facts`]: machine, WSL, DNS): plain data, serialized into `doctor
//!   --format json` and recording headers and readable back so that they can be overridden;
//!   detection functions take their inputs as parameters, `gather` reads the system;
//! - the socket tables of a network namespace ([`sockets`]), read by the fd table (enrich) and
//!   by the knowledge base;
//! - what rules ask of the running system at the time of a call ([`system`]);
//! - the short-lived cache all of those reads go through ([`fresh`]).

pub mod dns;
pub mod fresh;
pub mod machine;
pub mod namespaces;
pub mod sockets;
pub mod system;
pub mod wsl;
pub mod wsl_network;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub machine: machine::Machine,
    pub wsl: wsl::Wsl,
    pub dns: dns::Dns,
}

/// Observes the running system (no network traffic, nothing changed).
pub fn gather() -> Facts {
    let machine = machine::observe();
    let wsl = wsl::observe(&machine.kernel_release);
    Facts { machine, wsl, dns: dns::observe() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts go into recording headers and come back from them (or from --assume): they
    /// survive a JSON round trip unchanged.
    #[test]
    fn json_round_trip() {
        let facts = gather();
        let json = serde_json::to_string(&facts).unwrap();
        let back: Facts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, facts);
        assert!(json.contains(r#""kind":"none""#), "{json}");
    }
}
