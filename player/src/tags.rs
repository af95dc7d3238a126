//! A file's tags (title, artist, album, track number) and embedded cover art, read with
//! symphonia's metadata readers: ID3v1/v2, APE, Vorbis comments (FLAC, Ogg), MP4 atoms, RIFF
//! INFO. Tags of every revision the file holds are merged; a later revision wins.

use symphonia::core::meta::{MetadataRevision, StandardTag, StandardVisualKey, Visual};

use crate::decode::open_format;
use crate::song::DecodeError;

/// An embedded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    /// Its media type (`image/jpeg`, `image/png`), empty when the file does not say.
    pub media_type: String,
    /// The image file's bytes.
    pub data: Vec<u8>,
}

/// What a file's tags say; every field is `None` when the file does not say it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    /// The song's title.
    pub title: Option<String>,
    /// The performing artist.
    pub artist: Option<String>,
    /// The album.
    pub album: Option<String>,
    /// The track number on the album.
    pub track_number: Option<u32>,
    /// The front cover (or else the first picture) embedded in the file.
    pub cover: Option<Cover>,
}

impl Tags {
    fn apply(&mut self, rev: &MetadataRevision) {
        let tracks = rev.per_track.iter().map(|t| &t.metadata);
        for container in std::iter::once(&rev.media).chain(tracks) {
            for tag in &container.tags {
                let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
                match &tag.std {
                    Some(StandardTag::TrackTitle(s)) => self.title = text(s).or(self.title.take()),
                    Some(StandardTag::Artist(s)) => self.artist = text(s).or(self.artist.take()),
                    Some(StandardTag::Album(s)) => self.album = text(s).or(self.album.take()),
                    Some(StandardTag::TrackNumber(n)) => {
                        self.track_number = u32::try_from(*n).ok().or(self.track_number)
                    }
                    _ => {}
                }
            }
            if let Some(visual) = pick_cover(&container.visuals) {
                self.cover = Some(Cover {
                    media_type: visual.media_type.clone().unwrap_or_default(),
                    data: visual.data.to_vec(),
                });
            }
        }
    }
}

/// The front cover if there is one, else the first picture.
fn pick_cover(visuals: &[Visual]) -> Option<&Visual> {
    visuals
        .iter()
        .find(|v| v.usage == Some(StandardVisualKey::FrontCover))
        .or(visuals.first())
}

/// Reads the tags of an audio file held in memory. Fails only when the file is of no format
/// symphonia knows; a file without tags gives empty [`Tags`].
pub fn read_tags(bytes: &[u8]) -> Result<Tags, DecodeError> {
    let mut format = open_format(bytes)?;
    let mut tags = Tags::default();
    let mut log = format.metadata();
    while let Some(rev) = log.pop() {
        tags.apply(&rev);
    }
    if let Some(rev) = log.current() {
        tags.apply(rev);
    }
    Ok(tags)
}
