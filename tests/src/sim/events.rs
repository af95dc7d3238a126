//! The simulator's events, their queue order, and the trace hash.

use std::cmp::Ordering;

use sync_core::{LinkId, Message, SongRef};

#[derive(Debug)]
pub(super) enum Ev {
    Deliver {
        to: usize,
        inc: u32,
        link: LinkId,
        msg: Message,
    },
    LinkUp {
        a: usize,
        inc_a: u32,
        b: usize,
        inc_b: u32,
        addr: String,
    },
    ConnectFailed {
        node: usize,
        inc: u32,
        addr: String,
    },
    LinkDown {
        node: usize,
        inc: u32,
        link: LinkId,
    },
    Loaded {
        node: usize,
        inc: u32,
        song: SongRef,
    },
    Wake {
        node: usize,
        generation: u64,
    },
    Tick {
        node: usize,
        inc: u32,
    },
    Keeper {
        node: usize,
        inc: u32,
    },
    Sample,
    Command,
    Churn,
    PartitionStart,
    PartitionHeal,
    InitialJoin {
        a: usize,
        b: usize,
    },
    ClockStep,
    Debug,
    /// Fault `k` of the script strikes.
    Fault(usize),
    /// A stopped peer runs again.
    Resume {
        node: usize,
    },
    /// A killed peer starts again on its address, with a new id.
    Restart {
        node: usize,
    },
    /// Links still blocked by partition number `partition` are lost at both ends.
    TransportTimeout {
        partition: u64,
    },
    /// Is the group one again after the heal at `healed_at`?
    HealCheck {
        healed_at: u64,
    },
    /// A peer's audio thread stops getting the processor (its device's callbacks stall).
    DeviceStall {
        node: usize,
        inc: u32,
    },
    /// The stalled callbacks run again.
    DeviceResume {
        node: usize,
        inc: u32,
    },
}

impl Ev {
    pub(super) fn tag(&self) -> u8 {
        match self {
            Ev::Deliver { .. } => 1,
            Ev::LinkUp { .. } => 2,
            Ev::ConnectFailed { .. } => 3,
            Ev::LinkDown { .. } => 4,
            Ev::Loaded { .. } => 5,
            Ev::Wake { .. } => 6,
            Ev::Tick { .. } => 7,
            Ev::Keeper { .. } => 8,
            Ev::Sample => 9,
            Ev::Command => 10,
            Ev::Churn => 11,
            Ev::PartitionStart => 12,
            Ev::PartitionHeal => 13,
            Ev::InitialJoin { .. } => 14,
            Ev::ClockStep => 15,
            Ev::Debug => 16,
            Ev::Fault(_) => 17,
            Ev::Resume { .. } => 18,
            Ev::Restart { .. } => 19,
            Ev::TransportTimeout { .. } => 20,
            Ev::HealCheck { .. } => 21,
            Ev::DeviceStall { .. } => 22,
            Ev::DeviceResume { .. } => 23,
        }
    }
}

pub(super) struct Entry {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and the earliest (time, seq) must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

// ------------------------------------------------------------------------------------------
// Trace hash

/// FNV-1a over everything fed to it, usable as a `fmt::Write` sink for `Debug` output.
pub(super) struct TraceHash(pub(super) u64);

impl TraceHash {
    pub(super) fn new() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= *x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

impl std::fmt::Write for TraceHash {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}
