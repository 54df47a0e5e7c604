//! Facts read from the running system (socket tables, fd owners, namespaces), reused for a
//! short while. Failures come in bursts, and a reader that fell behind sees many unknown fds
//! at once: reading `/proc/PID/net/tcp` or a sock_diag dump per event (each walks a whole
//! table of the kernel, milliseconds on a large machine) made the reader fall further behind.

use std::time::{Duration, Instant};

/// How long a read stays current.
const TTL: Duration = Duration::from_millis(500);

/// The last value read for a key (`()` where there is one value), read again when it is older
/// than [`TTL`] or was read for another key.
pub struct Fresh<K, T> {
    held: Option<(K, Instant, T)>,
}

impl<K, T> Default for Fresh<K, T> {
    fn default() -> Self {
        Fresh { held: None }
    }
}

impl<K, T> Fresh<K, T> {
    /// Whether what is held is still current (for dropping stale entries of a map of these).
    pub fn is_current(&self) -> bool {
        self.held.as_ref().is_some_and(|(_, at, _)| at.elapsed() < TTL)
    }
}

impl<K: PartialEq, T> Fresh<K, T> {
    /// The value for `key`, from `read` when what is held is stale; a failed read keeps
    /// nothing and is returned.
    pub fn get<E>(&mut self, key: K, read: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let current = self.held.as_ref().is_some_and(|(k, at, _)| *k == key && at.elapsed() < TTL);
        if !current {
            self.held = None;
            self.held = Some((key, Instant::now(), read()?));
        }
        Ok(&self.held.as_ref().expect("held above").2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_once_per_key_while_current() {
        let mut fresh = Fresh::default();
        let mut reads = 0;
        let mut read = |v: u32| {
            reads += 1;
            Ok::<_, ()>(v)
        };
        assert_eq!(fresh.get(1, || read(10)), Ok(&10));
        assert_eq!(fresh.get(1, || read(11)), Ok(&10));
        assert_eq!(fresh.get(2, || read(20)), Ok(&20));
        assert_eq!(fresh.get(2, || Err(())), Ok(&20));
        assert_eq!(reads, 2);
        assert!(fresh.is_current());
        assert!(!Fresh::<(), u32>::default().is_current());
    }

    #[test]
    fn a_failed_read_keeps_nothing() {
        let mut fresh = Fresh::default();
        assert_eq!(fresh.get((), || Err::<u32, _>("gone")), Err("gone"));
        assert_eq!(fresh.get((), || Ok::<_, &str>(7)), Ok(&7));
    }
}
