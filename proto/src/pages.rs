//! The music server's lists cut to message size: pages of `ListSongs` and `ListPeers`, and the
//! legacy `GetPlaylist` and `GetPeerClientIPs` answers kept under [`LEGACY_LIST_BYTES`].
//! Pure: the server passes what it holds, these pick what goes in one message.

use prost::Message;

use crate::audio_service::{
    ListPeersResponse, ListSongsResponse, PeerListResponse, PlaylistResponse, RegisteredPeer,
    SongInfo,
};
use crate::limits::{LEGACY_LIST_BYTES, LIST_PAGE_BYTES};

/// Bytes one entry of a repeated message or string field takes: tag, length, body.
fn entry_len(body: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(body as u64) + body
}

/// How many of `lens` (entry body sizes) fit, from the first, in `budget` bytes; at least one
/// when there is one, so that a page always makes progress.
fn fitting(lens: impl Iterator<Item = usize>, budget: usize) -> usize {
    let mut used = 0;
    let mut n = 0;
    for len in lens {
        used += entry_len(len);
        if used > budget && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

/// Room left for entries in a page, after its other fields (two varints at most).
const PAGE_ENTRIES_BYTES: usize = LIST_PAGE_BYTES - 64;

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The `ListSongs` page of `songs` from `offset` on: at most `limit` songs (0: no limit) and
/// [`LIST_PAGE_BYTES`] encoded.
pub fn songs_page(songs: &[SongInfo], offset: u32, limit: u32) -> ListSongsResponse {
    let start = (offset as usize).min(songs.len());
    let rest = &songs[start..];
    let wanted = if limit == 0 {
        rest.len()
    } else {
        rest.len().min(limit as usize)
    };
    let n = fitting(
        rest[..wanted].iter().map(Message::encoded_len),
        PAGE_ENTRIES_BYTES,
    );
    ListSongsResponse {
        songs: rest[..n].to_vec(),
        total: count(songs.len()),
        next_offset: count(start + n),
    }
}

/// The `ListPeers` page of `peers` (the registrations after the request's `after`, ascending):
/// at most `limit` of them (0: no limit) and [`LIST_PAGE_BYTES`] encoded; the cursor is set when
/// some of `peers` are left out, so pass one more than the page may hold. `total` counts every
/// live registration.
pub fn peers_page(peers: &[RegisteredPeer], limit: u32, total: usize) -> ListPeersResponse {
    let wanted = if limit == 0 {
        peers.len()
    } else {
        peers.len().min(limit as usize)
    };
    let n = fitting(
        peers[..wanted].iter().map(Message::encoded_len),
        // The cursor repeats an address, at most this long.
        PAGE_ENTRIES_BYTES - 300,
    );
    let page = peers[..n].to_vec();
    let next_after = if n < peers.len() {
        page.last().map(|p| p.peer_addr.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    ListPeersResponse {
        peers: page,
        next_after,
        total: count(total),
    }
}

/// How a legacy list of `names`, each with details of the given encoded sizes, fits in
/// [`LEGACY_LIST_BYTES`]: how many names go out, and whether their details go too.
fn legacy_fit(names: &[String], details: impl Iterator<Item = usize>) -> (usize, bool) {
    let budget = LEGACY_LIST_BYTES - 16;
    let names_len: usize = names.iter().map(|n| entry_len(n.len())).sum();
    let details_len: usize = details.map(entry_len).sum();
    if names_len + details_len <= budget {
        (names.len(), true)
    } else {
        (fitting(names.iter().map(String::len), budget), false)
    }
}

/// The legacy `GetPlaylist` answer: every name with its metadata if that fits in
/// [`LEGACY_LIST_BYTES`], else every name without metadata, else the first names that fit.
pub fn legacy_playlist(songs: &[SongInfo]) -> PlaylistResponse {
    let mut song_names: Vec<String> = songs.iter().map(|s| s.name.clone()).collect();
    let (n, with_songs) = legacy_fit(&song_names, songs.iter().map(Message::encoded_len));
    song_names.truncate(n);
    PlaylistResponse {
        song_names,
        songs: if with_songs {
            songs.to_vec()
        } else {
            Vec::new()
        },
        total_songs: count(songs.len()),
    }
}

/// The legacy `GetPeerClientIPs` answer for `peers` (every live registration, ascending): every
/// address with its details if that fits in [`LEGACY_LIST_BYTES`], else every address without
/// details, else the first addresses that fit.
pub fn legacy_peer_list(peers: &[RegisteredPeer]) -> PeerListResponse {
    let mut client_ips: Vec<String> = peers.iter().map(|p| p.peer_addr.clone()).collect();
    let (n, with_peers) = legacy_fit(&client_ips, peers.iter().map(Message::encoded_len));
    client_ips.truncate(n);
    PeerListResponse {
        client_ips,
        peers: if with_peers {
            peers.to_vec()
        } else {
            Vec::new()
        },
        total_peers: count(peers.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(i: usize, name_len: usize) -> SongInfo {
        SongInfo {
            name: format!("{i:06}{}.wav", "x".repeat(name_len)),
            content_hash: "ab".repeat(32),
            duration_ms: 1000,
            sample_rate: 48_000,
            channels: 2,
            bits_per_sample: 16,
            size_bytes: 192_044,
            frames: 48_000,
            data_offset: 44,
            block_align: 4,
            ..SongInfo::default()
        }
    }

    fn peer(i: usize) -> RegisteredPeer {
        RegisteredPeer {
            peer_addr: format!("10.0.{}.{}:{}", i / 65_536, i / 256 % 256, 1000 + i % 256),
            node_id: i as u64,
            lease_remaining_ms: 30_000,
        }
    }

    #[test]
    fn pages_of_long_named_songs_stay_under_the_page_size_and_cover_the_library_once() {
        let songs: Vec<SongInfo> = (0..5_000).map(|i| song(i, 1000)).collect();
        let mut offset = 0;
        let mut seen = Vec::new();
        while (offset as usize) < songs.len() {
            let page = songs_page(&songs, offset, 0);
            assert!(
                page.encoded_len() <= LIST_PAGE_BYTES,
                "{}",
                page.encoded_len()
            );
            assert_eq!(page.total, 5_000);
            assert!(page.next_offset > offset, "a page makes progress");
            seen.extend(page.songs);
            offset = page.next_offset;
        }
        assert_eq!(seen, songs);
        assert!(songs_page(&songs, 5_000, 0).songs.is_empty());
        assert!(songs_page(&songs, u32::MAX, 0).songs.is_empty());
    }

    #[test]
    fn a_song_page_honours_its_limit() {
        let songs: Vec<SongInfo> = (0..10).map(|i| song(i, 0)).collect();
        let page = songs_page(&songs, 8, 5);
        assert_eq!(page.songs, songs[8..].to_vec());
        assert_eq!(page.next_offset, 10);
        assert_eq!(songs_page(&songs, 2, 3).songs, songs[2..5].to_vec());
    }

    #[test]
    fn a_peer_page_ends_with_an_empty_cursor_only_at_the_end() {
        let peers: Vec<RegisteredPeer> = (0..10).map(peer).collect();
        let first = peers_page(&peers, 4, 10);
        assert_eq!(first.peers, peers[..4].to_vec());
        assert_eq!(first.next_after, peers[3].peer_addr);
        let last = peers_page(&peers[4..], 0, 10);
        assert_eq!(last.peers.len(), 6);
        assert_eq!(last.next_after, "");
        assert_eq!(last.total, 10);
    }

    #[test]
    fn the_legacy_playlist_keeps_metadata_while_it_fits_then_names_then_a_prefix() {
        let small: Vec<SongInfo> = (0..10_000).map(|i| song(i, 0)).collect();
        let all = legacy_playlist(&small);
        assert_eq!((all.song_names.len(), all.songs.len()), (10_000, 10_000));
        assert!(all.encoded_len() <= LEGACY_LIST_BYTES);

        let long: Vec<SongInfo> = (0..5_000).map(|i| song(i, 600)).collect();
        let names = legacy_playlist(&long);
        assert_eq!((names.song_names.len(), names.songs.len()), (5_000, 0));
        assert!(names.encoded_len() <= LEGACY_LIST_BYTES);

        let huge: Vec<SongInfo> = (0..10_000).map(|i| song(i, 1000)).collect();
        let cut = legacy_playlist(&huge);
        assert!(cut.song_names.len() > 3_000 && cut.song_names.len() < 10_000);
        assert_eq!(
            cut.song_names[0], huge[0].name,
            "a prefix keeps song numbers"
        );
        assert_eq!(cut.total_songs, 10_000);
        assert!(cut.encoded_len() <= LEGACY_LIST_BYTES);
    }

    #[test]
    fn the_legacy_peer_list_stays_under_the_legacy_size() {
        let peers: Vec<RegisteredPeer> = (0..100_000).map(peer).collect();
        let list = legacy_peer_list(&peers);
        assert!(list.encoded_len() <= LEGACY_LIST_BYTES);
        assert_eq!(list.client_ips.len(), 100_000);
        assert_eq!(list.total_peers, 100_000);
        let few = legacy_peer_list(&peers[..10]);
        assert_eq!(few.peers, peers[..10].to_vec());
    }
}
