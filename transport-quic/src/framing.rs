//! Length-delimited `PeerFrame`s on a QUIC stream: a 4-byte big-endian length, then that many
//! bytes of the frame. A length beyond the codec's limit is reported and its bytes skipped, so
//! one bad frame costs neither a panic nor the link.

use music262_proto::codec::{CodecError, MAX_FRAME_LEN};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Prefixes an encoded frame with its length.
pub fn delimit(frame: &[u8]) -> Vec<u8> {
    let len = u32::try_from(frame.len()).expect("frames are limited to MAX_FRAME_LEN");
    let mut out = Vec::with_capacity(PREFIX_LEN + frame.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// Cuts a byte stream into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes of an oversized frame still to be thrown away.
    skip: u64,
}

impl FrameReader {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
            self.skip -= n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, or an error for an oversized one (whose bytes are then skipped
    /// as they come); `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, CodecError>> {
        if self.skip > 0 || self.buf.len() < PREFIX_LEN {
            return None;
        }
        let len = u32::from_be_bytes(self.buf[..PREFIX_LEN].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME_LEN {
            let have = self.buf.len() - PREFIX_LEN;
            let drop = have.min(len);
            self.skip = (len - drop) as u64;
            self.buf.drain(..PREFIX_LEN + drop);
            return Some(Err(CodecError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            }));
        }
        if self.buf.len() < PREFIX_LEN + len {
            return None;
        }
        let frame = self.buf[PREFIX_LEN..PREFIX_LEN + len].to_vec();
        self.buf.drain(..PREFIX_LEN + len);
        Some(Ok(frame))
    }

    /// Bytes held that do not yet form a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_arbitrarily_come_out_whole() {
        let frames: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), vec![7u8; 1000]];
        let wire: Vec<u8> = frames.iter().flat_map(|f| delimit(f)).collect();
        for chunk in [1, 2, 3, 5, 1000, wire.len()] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                r.push(piece);
                while let Some(f) = r.next_frame() {
                    got.push(f.unwrap());
                }
            }
            assert_eq!(got, frames, "chunks of {chunk}");
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn an_oversized_frame_is_reported_and_skipped_and_the_next_one_read() {
        let big = MAX_FRAME_LEN + 1;
        let mut wire = (big as u32).to_be_bytes().to_vec();
        wire.extend(std::iter::repeat_n(0xAAu8, big));
        wire.extend(delimit(b"after"));
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        for piece in wire.chunks(1500) {
            r.push(piece);
            while let Some(f) = r.next_frame() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Err(CodecError::FrameTooLarge {
                    len: big,
                    max: MAX_FRAME_LEN
                }),
                Ok(b"after".to_vec())
            ]
        );
    }
}
