//! Length-prefixed frames.
//!
//! A clean end of stream between two frames is `Ok(None)`: the peer closed
//! its end. An end of stream inside a frame, a length above the cap, or a
//! payload that does not decode is an error, so a worker process that dies
//! mid-write or writes garbage is told apart from one that simply exited.

use std::io::{self, Read, Write};

/// The largest payload accepted, in bytes. Task arguments are capped well
/// below this at enqueue time (setting `max_args_bytes`).
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying socket failed.
    #[error("i/o error on the ipc channel: {0}")]
    Io(io::Error),
    /// The stream ended part-way through a frame.
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes the frame header (or frame) promised.
        expected: usize,
        /// Bytes that arrived before the end.
        got: usize,
    },
    /// The length prefix is above [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes is over the {max} byte limit")]
    Oversized {
        /// The announced length.
        len: u64,
        /// The cap.
        max: u32,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads as many bytes as `buf` holds; returns how many arrived before the
/// end of the stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame's payload. `Ok(None)` means the peer closed the stream
/// cleanly between frames.
pub fn read_frame(r: &mut impl Read, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < header.len() {
        return Err(FrameError::Truncated { expected: 4, got });
    }
    let len = u32::from_le_bytes(header);
    if len > max {
        return Err(FrameError::Oversized {
            len: u64::from(len),
            max,
        });
    }
    let mut payload = vec![0u8; len as usize];
    let got = read_full(r, &mut payload)?;
    if got < payload.len() {
        return Err(FrameError::Truncated {
            expected: payload.len(),
            got,
        });
    }
    Ok(Some(payload))
}

/// Writes one frame (header and payload in a single write, so concurrent
/// writers serialised by a lock never interleave).
pub fn write_frame(w: &mut impl Write, payload: &[u8], max: u32) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= max)
        .ok_or(FrameError::Oversized {
            len: payload.len() as u64,
            max,
        })?;
    let mut buf = Vec::with_capacity(payload.len() + 4);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, payload, MAX_FRAME_BYTES).expect("in-memory write");
        out
    }

    #[test]
    fn frames_round_trip_and_clean_eof_is_none() {
        let mut bytes = framed(b"hello");
        bytes.extend(framed(b""));
        let mut r = bytes.as_slice();
        assert_eq!(
            read_frame(&mut r, MAX_FRAME_BYTES).expect("first"),
            Some(b"hello".to_vec())
        );
        assert_eq!(
            read_frame(&mut r, MAX_FRAME_BYTES).expect("second"),
            Some(Vec::new())
        );
        assert_eq!(read_frame(&mut r, MAX_FRAME_BYTES).expect("eof"), None);
    }

    #[test]
    fn eof_inside_header_or_payload_is_an_error() {
        let bytes = framed(b"hello");
        for cut in 1..bytes.len() {
            let mut r = &bytes[..cut];
            let err = read_frame(&mut r, MAX_FRAME_BYTES).expect_err("truncated");
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_reading_them() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let err = read_frame(&mut r, MAX_FRAME_BYTES).expect_err("oversized");
        assert!(matches!(err, FrameError::Oversized { .. }), "{err}");
        let err = write_frame(&mut Vec::new(), &[0u8; 10], 4).expect_err("oversized write");
        assert!(matches!(err, FrameError::Oversized { len: 10, max: 4 }));
    }
}
