//! Instants and durations of the two clocks a node deals with.
//!
//! Every input carries a [`LocalTime`] (the node's own monotonic clock) so that tests,
//! the simulator and fuzzers can construct any instant; nothing here reads a clock.
//! [`GroupTime`] is the reference peer's clock as this node estimates it.

use std::fmt;
use std::ops::{Add, Sub};

/// A length of time in nanoseconds, signed so that offsets and errors can be negative.
pub type Nanos = i64;

/// One second in nanoseconds.
pub const SECOND: Nanos = 1_000_000_000;
/// One millisecond in nanoseconds.
pub const MILLISECOND: Nanos = 1_000_000;
/// One microsecond in nanoseconds.
pub const MICROSECOND: Nanos = 1_000;

macro_rules! instant_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The instant `ns` nanoseconds after the clock's epoch.
            pub const fn from_nanos(ns: u64) -> Self {
                Self(ns)
            }

            /// Nanoseconds since the clock's epoch.
            pub const fn as_nanos(self) -> u64 {
                self.0
            }

            /// `self - earlier` in nanoseconds (negative when `earlier` is later).
            pub fn since(self, earlier: Self) -> Nanos {
                (self.0 as i128 - earlier.0 as i128).clamp(i64::MIN as i128, i64::MAX as i128)
                    as Nanos
            }

            /// The instant `d` nanoseconds later (earlier when negative), saturating at the
            /// ends of the range instead of wrapping.
            pub fn offset(self, d: Nanos) -> Self {
                Self((self.0 as i128 + d as i128).clamp(0, u64::MAX as i128) as u64)
            }
        }

        impl Add<Nanos> for $name {
            type Output = Self;
            fn add(self, d: Nanos) -> Self {
                self.offset(d)
            }
        }

        impl Sub<Nanos> for $name {
            type Output = Self;
            fn sub(self, d: Nanos) -> Self {
                self.offset(d.saturating_neg())
            }
        }

        impl Sub for $name {
            type Output = Nanos;
            fn sub(self, other: Self) -> Nanos {
                self.since(other)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}.{:09})", stringify!($name), self.0 / 1_000_000_000, self.0 % 1_000_000_000)
            }
        }
    };
}

instant_type!(
    /// An instant of this node's monotonic clock, in nanoseconds since an arbitrary epoch.
    LocalTime
);
instant_type!(
    /// An instant of group time: the reference peer's clock as estimated by this node,
    /// in nanoseconds.
    GroupTime
);

/// Formats a signed nanosecond quantity with a readable unit, for logs and tables.
pub fn format_nanos(ns: Nanos) -> String {
    let a = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if a >= SECOND as u64 {
        format!("{sign}{:.3}s", a as f64 / 1e9)
    } else if a >= MILLISECOND as u64 {
        format!("{sign}{:.3}ms", a as f64 / 1e6)
    } else if a >= MICROSECOND as u64 {
        format!("{sign}{:.1}us", a as f64 / 1e3)
    } else {
        format!("{sign}{a}ns")
    }
}

/// The oldest kernel receive stamp a driver should believe: something read later than this
/// after it arrived is stamped when read (its delay is large either way, and a realtime clock
/// step stays bounded).
pub const MAX_KERNEL_AGE_NS: u64 = 1_000_000_000;

/// For drivers: the local instant of a packet the kernel stamped `kernel_ns` (`CLOCK_REALTIME`,
/// ns since the epoch), given the realtime clock `realtime_ns` and the local clock `now` (ns)
/// read together after it was received. The two clocks are never compared: the packet's age on
/// the realtime clock is taken back from the local clock. An age below zero or above
/// [`MAX_KERNEL_AGE_NS`] (the realtime clock stepped, or a stale stamp) gives `now`.
pub fn kernel_instant(kernel_ns: i128, realtime_ns: i128, now: u64) -> u64 {
    let age = realtime_ns - kernel_ns;
    if (0..=i128::from(MAX_KERNEL_AGE_NS)).contains(&age) {
        now.saturating_sub(age as u64)
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_stamp_is_taken_back_from_the_local_clock_by_its_age() {
        let sec = 1_700_000_000_000_000_000i128;
        // Arrived 30 us before the clocks were read: 30 us before `now` on the local clock,
        // however far apart the two clocks are.
        assert_eq!(kernel_instant(sec - 30_000, sec, 5_000_000), 4_970_000);
        assert_eq!(kernel_instant(sec, sec, 5_000_000), 5_000_000);
        // Never before the local clock's zero.
        assert_eq!(kernel_instant(sec - 30_000, sec, 10_000), 0);
        // At most a second old is believed.
        let max = i128::from(MAX_KERNEL_AGE_NS);
        assert_eq!(kernel_instant(sec - max, sec, 2_000_000_000), 1_000_000_000);
    }

    #[test]
    fn an_implausible_kernel_stamp_gives_now() {
        let sec = 1_700_000_000_000_000_000i128;
        let max = i128::from(MAX_KERNEL_AGE_NS);
        // From the future (the realtime clock stepped back after it), or too old (stepped
        // forward, or a stale stamp), or none at all (zero).
        assert_eq!(kernel_instant(sec + 1, sec, 5_000_000), 5_000_000);
        assert_eq!(kernel_instant(sec - max - 1, sec, 5_000_000), 5_000_000);
        assert_eq!(kernel_instant(0, sec, 5_000_000), 5_000_000);
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(LocalTime(5) - 10, LocalTime(0));
        assert_eq!(LocalTime(u64::MAX) + 10, LocalTime(u64::MAX));
        assert_eq!(LocalTime(5) - LocalTime(15), -10);
        assert_eq!(GroupTime(2 * SECOND as u64).since(GroupTime(0)), 2 * SECOND);
    }

    #[test]
    fn nanos_format_with_readable_units() {
        assert_eq!(format_nanos(1_500), "1.5us");
        assert_eq!(format_nanos(-2_500_000), "-2.500ms");
        assert_eq!(format_nanos(3 * SECOND), "3.000s");
        assert_eq!(format_nanos(12), "12ns");
    }
}
