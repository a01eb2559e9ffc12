//! Target `frame_decode`: the frame codec and the fragment scan over arbitrary bytes.
//!
//! Input: `journal u8` (picks the checksum salt), `offset u64` (where the bytes claim to sit),
//! then the bytes. Checks that `decode_header`, `decode_frame`, `messages` and `scan_fragment`
//! never panic, that whatever validates re-encodes to the same header and payload bytes, that a
//! valid message list rebuilds the same payload, and that a scan's valid prefix rescans cleanly.

use ss_log::frame::{self, Batch, FrameError, FRAME_ALIGN_BYTES, FRAME_KIND_BATCH, HEADER_LEN};
use ss_log::recovery::scan_fragment;

use super::input::Input;

/// Journal names whose salts the target picks from.
pub const JOURNALS: [&str; 3] = ["fuzz", "chunks-000", "sums-000"];

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let salt = frame::journal_salt(JOURNALS[input.u8() as usize % JOURNALS.len()]);
    let offset = input.u64();
    let bytes = input.rest();

    check_frame(bytes, salt, offset);
    check_messages(bytes);
    check_scan(bytes, salt, offset);
}

fn check_frame(bytes: &[u8], salt: u32, offset: u64) {
    let header = frame::decode_header(bytes, salt, offset);
    if let Ok(h) = &header {
        assert_eq!(h.offset, offset, "a valid header sits where it claims");
        assert_eq!(h.kind, FRAME_KIND_BATCH);
        assert!(
            h.write_begin <= h.offset,
            "write_begin {} after offset {}",
            h.write_begin,
            h.offset
        );
        assert_eq!(h.offset % FRAME_ALIGN_BYTES, 0, "valid frames are aligned");
    }
    match frame::decode_frame(bytes, salt, offset) {
        Ok(h) => {
            assert_eq!(
                header.as_ref().ok(),
                Some(&h),
                "decode_frame and decode_header agree"
            );
            let payload_end = HEADER_LEN + h.payload_len as usize;
            let payload = &bytes[HEADER_LEN..payload_end];
            assert_eq!(frame::payload_crc(salt, payload), h.payload_crc);
            let mut encoded = Vec::new();
            frame::encode_frame(&mut encoded, salt, &h, payload);
            assert_eq!(encoded.len() as u64, h.frame_len_bytes());
            assert!(
                bytes.len() as u64 >= h.frame_len_bytes(),
                "a valid frame is whole"
            );
            // Padding after the payload is not covered by the checksums; all else must match.
            assert_eq!(
                &encoded[..payload_end],
                &bytes[..payload_end],
                "re-encoding differs"
            );
            check_messages(payload);
        }
        Err(e) => {
            if header.is_ok() {
                assert!(
                    matches!(
                        e,
                        FrameError::Truncated { .. } | FrameError::PayloadChecksum { .. }
                    ),
                    "a valid header can only fail on its payload, not with {e:?}"
                );
            } else {
                assert_eq!(header.err(), Some(e), "decode_frame reports the header's error");
            }
        }
    }
}

/// A message list either decodes completely (and rebuilds the same payload) or yields exactly
/// one error, last.
fn check_messages(payload: &[u8]) {
    let mut batch = Batch::new();
    let mut iter = frame::messages(payload);
    let mut failed = false;
    let mut steps = 0usize;
    while let Some(item) = iter.next() {
        steps += 1;
        assert!(steps <= payload.len() + 1, "message iterator does not advance");
        match item {
            Ok(m) => batch.push(m),
            Err(FrameError::BadMessages { .. }) => {
                failed = true;
                assert!(iter.next().is_none(), "nothing follows a message-list error");
                break;
            }
            Err(e) => panic!("message list error of the wrong kind: {e:?}"),
        }
    }
    if !failed {
        assert_eq!(
            batch.payload(),
            payload,
            "a valid message list rebuilds the same payload"
        );
    }
}

fn check_scan(bytes: &[u8], salt: u32, begin: u64) {
    let scan = scan_fragment(bytes, salt, begin);
    assert!(scan.valid_len <= bytes.len());
    assert_eq!(
        scan.valid_len as u64 % FRAME_ALIGN_BYTES,
        0,
        "frames have aligned lengths"
    );
    match &scan.first_error {
        Some((pos, _)) => assert_eq!(*pos, scan.valid_len, "the scan stops at its first error"),
        None => assert_eq!(scan.valid_len, bytes.len(), "no error means everything validated"),
    }
    // Walk the valid prefix again, frame by frame.
    let mut pos = 0usize;
    let mut count = 0u64;
    let mut last = None;
    while pos < scan.valid_len {
        let h = frame::decode_frame(&bytes[pos..], salt, begin + pos as u64)
            .unwrap_or_else(|e| panic!("frame at {pos} of the valid prefix fails: {e}"));
        last = Some(pos);
        count += 1;
        pos += h.frame_len_bytes() as usize;
    }
    assert_eq!(pos, scan.valid_len, "valid prefix ends on a frame boundary");
    assert_eq!(count, scan.frame_count);
    assert_eq!(last, scan.last_frame_pos);
    let again = scan_fragment(&bytes[..scan.valid_len], salt, begin);
    assert!(
        again.first_error.is_none(),
        "the valid prefix rescans without error"
    );
    assert_eq!(again.valid_len, scan.valid_len);
    assert_eq!(again.frame_count, scan.frame_count);
}
