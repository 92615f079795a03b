//! RTP port allocation from the processor's media range.
//!
//! RTP uses even ports (RFC 3550 §11: RTCP takes the next odd one). Freed ports go to the back
//! of a FIFO so a port is not handed out again while late packets of its last call may still
//! arrive.
use std::collections::VecDeque;

/// Pool of even RTP ports in an inclusive range.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    in_use: Vec<bool>,
    base: u16,
}

impl PortPool {
    /// A pool of the even ports in `lo..=hi` (empty when `lo > hi`).
    pub fn new(lo: u16, hi: u16) -> Self {
        let first = lo.saturating_add(lo & 1);
        let free: VecDeque<u16> = (first..=hi)
            .step_by(2)
            .filter(|p| p.is_multiple_of(2))
            .collect();
        let in_use = vec![false; free.len()];
        Self {
            free,
            in_use,
            base: first,
        }
    }

    fn index(&self, port: u16) -> Option<usize> {
        if !port.is_multiple_of(2) || port < self.base {
            return None;
        }
        let i = usize::from((port - self.base) / 2);
        (i < self.in_use.len()).then_some(i)
    }

    /// Takes a free port; `None` when the range is exhausted (the caller answers 503).
    pub fn alloc(&mut self) -> Option<u16> {
        let p = self.free.pop_front()?;
        if let Some(i) = self.index(p) {
            self.in_use[i] = true;
        }
        Some(p)
    }

    /// Returns a port; ignores ports not from this pool and double frees.
    pub fn free(&mut self, port: u16) {
        if let Some(i) = self.index(port) {
            if self.in_use[i] {
                self.in_use[i] = false;
                self.free.push_back(port);
            }
        }
    }

    /// Ports in the pool, free or not.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    /// Ports currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_fifo_and_no_double_free() {
        let mut p = PortPool::new(10001, 10006);
        assert_eq!(p.available(), 3);
        assert_eq!(p.alloc(), Some(10002));
        assert_eq!(p.alloc(), Some(10004));
        assert_eq!(p.alloc(), Some(10006));
        assert_eq!(p.alloc(), None);
        p.free(10004);
        p.free(10004);
        p.free(10005);
        p.free(9000);
        assert_eq!(p.available(), 1);
        assert_eq!(p.alloc(), Some(10004));
        assert!(PortPool::new(5, 4).alloc().is_none());
        assert!(PortPool::new(65535, 65535).alloc().is_none());
    }
}
