//! The sliding window that tells a new datagram counter from a replayed or too old one.

use super::DATAGRAM_WINDOW;

/// Sliding-window replay check (RFC 4303 §3.4.3 style): the highest counter seen and a bitmap
/// of the [`DATAGRAM_WINDOW`] before it.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    /// Highest counter accepted plus one (0: none yet).
    pub(super) top: u64,
    /// Bit `i` set: counter `top - 1 - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `counter` is new: neither seen nor older than the window.
    pub fn is_new(&self, counter: u64) -> bool {
        if counter >= self.top {
            return true;
        }
        let back = self.top - 1 - counter;
        back < DATAGRAM_WINDOW && self.seen & (1u128 << back) == 0
    }

    /// Records `counter` as seen (call only after its tag verified).
    pub fn mark(&mut self, counter: u64) {
        if counter >= self.top {
            let shift = counter + 1 - self.top;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = counter + 1;
        } else {
            self.seen |= 1u128 << (self.top - 1 - counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_may_arrive_out_of_order_within_the_window_but_not_twice_or_too_late() {
        let mut w = ReplayWindow::default();
        for c in [5, 3, 4, 0, 200] {
            assert!(w.is_new(c), "{c}");
            w.mark(c);
        }
        for c in [5, 3, 4, 200] {
            assert!(!w.is_new(c), "{c} twice");
        }
        // The window holds the newest counter and the DATAGRAM_WINDOW - 1 before it.
        let oldest = 200 + 1 - DATAGRAM_WINDOW;
        assert!(w.is_new(199) && w.is_new(oldest));
        assert!(!w.is_new(oldest - 1), "older than the window");
        assert!(!w.is_new(0));
    }
}
