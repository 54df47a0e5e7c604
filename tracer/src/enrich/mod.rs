//! What the kernel can tell about the things events refer to, beyond the event itself.

pub mod sockets;
