//! What a [`Node`] can be asked without changing it: its state, its clocks, its links and its
//! counters.

use super::*;

impl Node {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The group state held.
    pub fn state(&self) -> &GroupState {
        &self.register.state
    }

    /// Whether `song` is the group's song: a download that finishes after the group moved on
    /// is kept aside, not installed.
    pub fn wants_song(&self, song: &SongRef) -> bool {
        self.register
            .state
            .song
            .as_ref()
            .is_some_and(|s| s.same_song(song))
    }

    /// Whether the player holds the group's song (it reported it loaded).
    pub fn has_song(&self) -> bool {
        self.follower.has_song_of(&self.register.state)
    }

    /// The wait of a loading state this node started, while it lasts: for whom, since when,
    /// until when at most (asked at local instant `now`).
    pub fn load_wait(&self, now: LocalTime) -> Option<LoadWait> {
        let loaded = self.follower.has_song_of(&self.register.state);
        self.register.load_wait(
            self.id(),
            self.links.peer_ids(),
            loaded,
            &self.tree.mapping,
            now.max(self.now),
        )
    }

    /// The last loading state this node started whose deadline passed, and the linked peers
    /// the group started without (empty when all were ready).
    pub fn started_without(&self) -> Option<(StateVersion, &[NodeId])> {
        self.register.started_without()
    }

    /// Group time at local instant `at`.
    pub fn group_time(&self, at: LocalTime) -> GroupTime {
        self.tree.mapping.to_group(at)
    }

    /// Group time at local instant `at`, fractional, as nanoseconds since `base`.
    pub fn group_time_since(&self, at: LocalTime, base: GroupTime) -> f64 {
        self.tree.mapping.to_group_since(at, base)
    }

    /// The local instant at which group time reaches `g`.
    pub fn local_time(&self, g: GroupTime) -> LocalTime {
        self.tree.mapping.to_local(g)
    }

    /// Where the group timeline stands at local instant `at` (what should be heard then).
    pub fn timeline_at(&self, at: LocalTime) -> Timeline {
        self.register.state.timeline_at(self.group_time(at))
    }

    /// Fractional frame the timeline says is heard at local instant `at`, when playing.
    pub fn expected_frame(&self, at: LocalTime) -> Option<f64> {
        let playing = self.follower.playing;
        register::expected_frame(&self.register.state, &self.tree.mapping, playing, at)
    }

    /// Clock-sync status.
    pub fn sync_status(&self) -> SyncStatus {
        SyncStatus {
            node_id: self.id(),
            root: self.tree.root,
            stratum: self.tree.stratum,
            parent: self.tree.parent_peer(&self.links),
            mapping: self.tree.mapping,
            lead: self.lead(),
            radius: self.tree.radius,
        }
    }

    /// The lead currently added to commands: long enough for a state to cross the clock tree
    /// from here to its farthest node (measured delays with a factor and a margin), bounded.
    pub fn lead(&self) -> Nanos {
        self.tree.lead(&self.config)
    }

    /// The drift controller's last rate (ppm) and error (ns).
    pub fn correction_status(&self) -> (f64, Option<Nanos>) {
        self.follower.correction_status()
    }

    /// Snapshots of every link, ordered by link id.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.links.statuses(self.now, self.id(), self.tree.parent)
    }

    /// Number of links whose handshake completed.
    pub fn peer_count(&self) -> usize {
        self.links.peer_count()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        Counters {
            messages_sent: self.out.messages_sent,
            messages_received: self.messages_received,
            bad_messages: self.bad_messages,
            states_accepted: self.register.states_accepted,
            states_ignored: self.register.states_ignored,
            jumps: self.follower.jumps,
            states_foreign: self.register.states_foreign,
        }
    }
}
