//! One link's transmit instants of clock probes as the socket saw them: the probe's `t0`
//! corrected when its reply comes back, and the lead a reply's `t2` is stamped with.

use std::collections::VecDeque;

use super::TxTicket;

/// Probes remembered per link until their reply (sync-core keeps 8 outstanding).
const PROBES_KEPT: usize = 16;
/// Replies whose socket instant is awaited, per link.
const REPLIES_KEPT: usize = 16;
/// Measured hand-off → socket delays of replies the lead is taken from, per link.
const DELAYS_KEPT: usize = 32;
/// A lead never exceeds this. A lead this long means nearly every recent reply waited
/// longer, so the wait is real. The cap still keeps a process stalled for seconds from
/// stamping its replies far ahead.
const MAX_LEAD_NS: u64 = 5_000_000;

/// One link's transmit instants of clock probes, as the socket saw them.
#[derive(Debug, Default)]
pub struct ProbeTx {
    /// Probes sent, oldest first: sequence number, `t0` as written in the frame, ticket.
    probes: VecDeque<(u32, u64, TxTicket)>,
    /// Replies handed to quinn whose socket instant is not known yet: hand-off, ticket.
    replies: VecDeque<(u64, TxTicket)>,
    /// Recent hand-off → socket delays of replies, oldest first.
    delays: VecDeque<u64>,
}

impl ProbeTx {
    /// Remembers that probe `seq`, stamped `t0` in its frame, was handed to quinn, its socket
    /// instant to come in `ticket`.
    pub fn probe_sent(&mut self, seq: u32, t0: u64, ticket: TxTicket) {
        self.probes.retain(|(s, ..)| *s != seq);
        if self.probes.len() >= PROBES_KEPT {
            self.probes.pop_front();
        }
        self.probes.push_back((seq, t0, ticket));
    }

    /// Replaces the echoed `t0` of a reply to one of our probes by the instant the socket
    /// really sent that probe, if known (and the echo is the `t0` we wrote, and the socket's
    /// instant not earlier). Returns whether it did.
    pub fn fix_reply(&mut self, seq: u32, t0: &mut u64) -> bool {
        let Some(pos) = self.probes.iter().position(|(s, ..)| *s == seq) else {
            return false;
        };
        let (_, stamped, ticket) = self.probes.remove(pos).expect("index from position");
        match ticket.sent_at() {
            Some(sent) if *t0 == stamped && sent >= stamped => {
                *t0 = sent;
                true
            }
            _ => false,
        }
    }

    /// Remembers that a reply was handed to quinn at `handoff`, its socket instant to come in
    /// `ticket`.
    pub fn reply_sent(&mut self, handoff: u64, ticket: TxTicket) {
        self.harvest();
        if self.replies.len() >= REPLIES_KEPT {
            self.replies.pop_front();
        }
        self.replies.push_back((handoff, ticket));
    }

    /// How long after its hand-off the next reply is expected to leave the socket: the
    /// `LEAD_PERCENTILE` of the recent replies' measured waits (0 before any is known).
    pub fn reply_lead(&mut self) -> u64 {
        self.harvest();
        if self.delays.is_empty() {
            return 0;
        }
        let mut d: Vec<u64> = self.delays.iter().copied().collect();
        d.sort_unstable();
        d[(d.len() - 1) * LEAD_PERCENTILE / 100].min(MAX_LEAD_NS)
    }

    /// Moves the replies whose socket instant has come into the delays (a reply whose packet
    /// never left stays until newer ones push it out).
    fn harvest(&mut self) {
        let delays = &mut self.delays;
        self.replies
            .retain(|(handoff, ticket)| match ticket.sent_at() {
                Some(sent) => {
                    if delays.len() >= DELAYS_KEPT {
                        delays.pop_front();
                    }
                    delays.push_back(sent.saturating_sub(*handoff));
                    false
                }
                None => true,
            });
    }
}

/// Which of the recent reply waits is the lead, in percent (0: the least). With the
/// [`DELAYS_KEPT`] waits known, 5 % selects the second least.
const LEAD_PERCENTILE: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(at: u64) -> TxTicket {
        let t = TxTicket::default();
        t.fill(at);
        t
    }

    #[test]
    fn a_replys_echoed_t0_becomes_the_instant_the_socket_sent_the_probe() {
        let mut p = ProbeTx::default();
        p.probe_sent(5, 1_000, filled(1_300));
        p.probe_sent(6, 2_000, TxTicket::default());
        p.probe_sent(7, 3_000, filled(3_200));
        let mut t0 = 1_000;
        assert!(p.fix_reply(5, &mut t0));
        assert_eq!(t0, 1_300);
        // Once only: a duplicated reply keeps its echo.
        let mut t0 = 1_000;
        assert!(!p.fix_reply(5, &mut t0));
        assert_eq!(t0, 1_000);
        // Not sent yet (as far as the socket told): the echo stays.
        let mut t0 = 2_000;
        assert!(!p.fix_reply(6, &mut t0));
        assert_eq!(t0, 2_000);
        // An echo that is not what we wrote is left for the node to judge.
        let mut t0 = 2_999;
        assert!(!p.fix_reply(7, &mut t0));
        assert_eq!(t0, 2_999);
        let mut t0 = 9;
        assert!(!p.fix_reply(99, &mut t0), "unknown probe");
        assert_eq!(t0, 9);
    }

    #[test]
    fn a_socket_instant_before_the_stamp_is_not_used() {
        let mut p = ProbeTx::default();
        p.probe_sent(1, 1_000, filled(900));
        let mut t0 = 1_000;
        assert!(!p.fix_reply(1, &mut t0));
        assert_eq!(t0, 1_000);
    }

    #[test]
    fn only_the_latest_probes_are_remembered() {
        let mut p = ProbeTx::default();
        for seq in 0..(PROBES_KEPT as u32 + 4) {
            p.probe_sent(seq, 10 * seq as u64 + 1, filled(10 * seq as u64 + 5));
        }
        let mut t0 = 1;
        assert!(!p.fix_reply(0, &mut t0), "forgotten");
        let last = PROBES_KEPT as u32 + 3;
        let mut t0 = 10 * last as u64 + 1;
        assert!(p.fix_reply(last, &mut t0));
        assert_eq!(t0, 10 * last as u64 + 5);
    }

    #[test]
    fn the_reply_lead_is_a_low_percentile_of_measured_waits() {
        let mut p = ProbeTx::default();
        assert_eq!(p.reply_lead(), 0, "nothing measured yet");
        let pending = TxTicket::default();
        p.reply_sent(0, pending.clone());
        // Waits of 10, 20, ... 200 us, handed over in shuffled order; one never sent.
        for k in [
            7u64, 3, 19, 1, 12, 5, 16, 9, 20, 2, 14, 11, 18, 6, 4, 13, 8, 15, 10, 17,
        ] {
            let handoff = 1_000_000 * k;
            p.reply_sent(handoff, filled(handoff + 10_000 * k));
        }
        // The 5th percentile of 20 waits: the least of them.
        assert_eq!(p.reply_lead(), 10_000);
        // A wait measured late (its packet left after later ones) still counts, and one
        // unusually short wait does not move the lead.
        pending.fill(5_000);
        p.reply_sent(0, TxTicket::default());
        assert_eq!(p.delays.len(), 21);
        assert!(p.delays.contains(&5_000));
        assert_eq!(p.reply_lead(), 10_000);
        // With all 32 known, the second least.
        for _ in 0..DELAYS_KEPT {
            p.reply_sent(0, filled(30_000));
        }
        p.reply_sent(0, filled(1_000));
        p.reply_sent(0, filled(2_000));
        assert_eq!(p.reply_lead(), 2_000);
    }

    #[test]
    fn the_reply_lead_forgets_old_waits_and_is_bounded() {
        let mut p = ProbeTx::default();
        for i in 0..DELAYS_KEPT as u64 {
            p.reply_sent(i, filled(i + 1_000));
        }
        assert_eq!(p.reply_lead(), 1_000);
        // The process stalls for a while: every recent reply waited 50 ms.
        for i in 0..DELAYS_KEPT as u64 {
            p.reply_sent(i, filled(i + 50_000_000));
        }
        assert_eq!(p.reply_lead(), MAX_LEAD_NS);
        assert_eq!(p.delays.len(), DELAYS_KEPT);
    }
}
