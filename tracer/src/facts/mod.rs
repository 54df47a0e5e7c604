//! Facts about the environment wsltrace runs in: the machine, WSL, DNS. Plain data (serialized
//! into `doctor --format json` and recording headers, and readable back so that they can be
//! overridden); detection functions take their inputs as parameters, `gather` reads the system.

pub mod dns;
pub mod machine;
pub mod wsl;

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
