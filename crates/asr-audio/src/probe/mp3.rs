//! MPEG audio (MP3, and MP1/MP2 recognised): skip an ID3v2 tag, parse the first frame
//! header, then take the length from a Xing/Info header (with the LAME tag's encoder
//! delay and padding removed, as decoders do for gapless playback) or a VBRI header.
//! Files with neither are measured by walking their frame headers (no decoding).

use super::{AudioInfo, Codec, Container, ProbeError, Source};

/// Files larger than this without a Xing/VBRI header get a bitrate estimate instead of a
/// full frame walk.
const MAX_SCAN_BYTES: u64 = 64 << 20;
/// How far past the ID3 tag the first frame sync is searched for.
const MAX_SYNC_SEARCH: usize = 64 << 10;

/// Length of an ID3v2 tag at the start of `head` (header, body and footer), if any.
pub(super) fn id3v2_len(head: &[u8]) -> Option<u64> {
    if head.len() < 10 || &head[..3] != b"ID3" {
        return None;
    }
    let size = head[6..10]
        .iter()
        .fold(0u64, |acc, &b| (acc << 7) | u64::from(b & 0x7F));
    let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Mpeg1,
    Mpeg2,
    Mpeg25,
}

/// One parsed frame header.
#[derive(Clone, Copy, Debug)]
struct FrameHeader {
    version: Version,
    layer: u8,
    sample_rate_hz: u32,
    channels: u16,
    frame_len: usize,
    samples_per_frame: u32,
}

impl FrameHeader {
    fn parse(b: &[u8]) -> Option<FrameHeader> {
        if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
            return None;
        }
        let version = match (b[1] >> 3) & 0x03 {
            0 => Version::Mpeg25,
            2 => Version::Mpeg2,
            3 => Version::Mpeg1,
            _ => return None,
        };
        let layer = match (b[1] >> 1) & 0x03 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let bitrate_index = usize::from(b[2] >> 4);
        let rate_index = usize::from((b[2] >> 2) & 0x03);
        let padding = usize::from((b[2] >> 1) & 0x01);
        if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
            // Free-format and invalid bitrates are not supported by the walk.
            return None;
        }
        const RATES: [u32; 3] = [44_100, 48_000, 32_000];
        let sample_rate_hz = match version {
            Version::Mpeg1 => RATES[rate_index],
            Version::Mpeg2 => RATES[rate_index] / 2,
            Version::Mpeg25 => RATES[rate_index] / 4,
        };
        const V1_L1: [u32; 15] = [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ];
        const V1_L2: [u32; 15] = [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ];
        const V1_L3: [u32; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const V2_L1: [u32; 15] = [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ];
        const V2_L23: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let kbps = match (version, layer) {
            (Version::Mpeg1, 1) => V1_L1[bitrate_index],
            (Version::Mpeg1, 2) => V1_L2[bitrate_index],
            (Version::Mpeg1, _) => V1_L3[bitrate_index],
            (_, 1) => V2_L1[bitrate_index],
            _ => V2_L23[bitrate_index],
        };
        let bitrate = kbps * 1000;
        let (samples_per_frame, frame_len) = match (version, layer) {
            (_, 1) => (
                384,
                ((12 * bitrate / sample_rate_hz) as usize + padding) * 4,
            ),
            (_, 2) | (Version::Mpeg1, 3) => {
                (1152, (144 * bitrate / sample_rate_hz) as usize + padding)
            }
            _ => (576, (72 * bitrate / sample_rate_hz) as usize + padding),
        };
        let channels = if b[3] >> 6 == 3 { 1 } else { 2 };
        Some(FrameHeader {
            version,
            layer,
            sample_rate_hz,
            channels,
            frame_len,
            samples_per_frame,
        })
    }

    fn same_stream(&self, other: &FrameHeader) -> bool {
        self.version == other.version
            && self.layer == other.layer
            && self.sample_rate_hz == other.sample_rate_hz
    }

    fn codec(&self) -> Codec {
        match self.layer {
            1 => Codec::Mp1,
            2 => Codec::Mp2,
            _ => Codec::Mp3,
        }
    }

    /// Offset of a Xing/Info tag from the frame start (after the side information).
    fn xing_offset(&self) -> usize {
        match (self.version, self.channels) {
            (Version::Mpeg1, 1) => 21,
            (Version::Mpeg1, _) => 36,
            (_, 1) => 13,
            _ => 21,
        }
    }
}

pub(super) fn probe(source: &mut Source<'_>) -> Result<AudioInfo, ProbeError> {
    let bad = |m: &str| ProbeError::malformed(Container::Mp3, m);
    let start = id3v2_len(source.head()).unwrap_or(0);
    let window = source.read_vec(start, MAX_SYNC_SEARCH)?;
    // The first frame: a sync word whose header parses and, when the file goes on, is
    // followed by another frame of the same stream (guards against false syncs).
    let mut found = None;
    for pos in 0..window.len().saturating_sub(4) {
        if window[pos] != 0xFF {
            continue;
        }
        let Some(header) = FrameHeader::parse(&window[pos..]) else {
            continue;
        };
        let next = pos + header.frame_len;
        let confirmed = match window.get(next..next + 4) {
            Some(b) => FrameHeader::parse(b).is_some_and(|h| h.same_stream(&header)),
            None => true,
        };
        if confirmed {
            found = Some((pos, header));
            break;
        }
    }
    let Some((pos, first)) = found else {
        return Err(bad("no MPEG audio frame found"));
    };
    let frame_start = start + pos as u64;
    let mut info = AudioInfo {
        container: Container::Mp3,
        codec: first.codec(),
        sample_rate_hz: first.sample_rate_hz,
        channels: first.channels,
        bits_per_sample: None,
        num_frames: None,
        header_problem: None,
        rf64: false,
    };
    let frame = &window[pos..(pos + first.frame_len).min(window.len())];
    if let Some(n) = xing_frames(frame, &first).or_else(|| vbri_frames(frame, &first)) {
        info.num_frames = Some(n);
        return Ok(info);
    }
    let len = source.len();
    if len - frame_start > MAX_SCAN_BYTES {
        // Constant bitrate estimate from the first frame.
        let frames = (len - frame_start) / first.frame_len.max(1) as u64;
        info.num_frames = Some(frames * u64::from(first.samples_per_frame));
        return Ok(info);
    }
    let body = source.read_vec(frame_start, (len - frame_start) as usize)?;
    info.num_frames = Some(walk_frames(&body, &first));
    Ok(info)
}

/// Total frames from a Xing/Info header, minus the LAME tag's delay and padding.
fn xing_frames(frame: &[u8], header: &FrameHeader) -> Option<u64> {
    let off = header.xing_offset();
    let tag = frame.get(off..off + 8)?;
    if &tag[..4] != b"Xing" && &tag[..4] != b"Info" {
        return None;
    }
    let flags = u32::from_be_bytes([tag[4], tag[5], tag[6], tag[7]]);
    if flags & 0x1 == 0 {
        return None;
    }
    let count = frame.get(off + 8..off + 12)?;
    let mpeg_frames = u64::from(u32::from_be_bytes([count[0], count[1], count[2], count[3]]));
    let mut lame = off + 12;
    if flags & 0x2 != 0 {
        lame += 4;
    }
    if flags & 0x4 != 0 {
        lame += 100;
    }
    if flags & 0x8 != 0 {
        lame += 4;
    }
    let total = mpeg_frames * u64::from(header.samples_per_frame);
    // LAME extension: 9-byte encoder string, ..., 24 bits of delay/padding at +21.
    let trim = match frame.get(lame..lame + 24) {
        Some(ext) if matches!(&ext[..4], b"LAME" | b"Lavf" | b"Lavc") => {
            let raw = (u32::from(ext[21]) << 16) | (u32::from(ext[22]) << 8) | u32::from(ext[23]);
            u64::from(raw >> 12) + u64::from(raw & 0xFFF)
        }
        _ => 0,
    };
    Some(total.saturating_sub(trim))
}

/// Total frames from a Fraunhofer VBRI header (always 32 bytes after the frame header).
fn vbri_frames(frame: &[u8], header: &FrameHeader) -> Option<u64> {
    let tag = frame.get(36..36 + 18)?;
    if &tag[..4] != b"VBRI" {
        return None;
    }
    let mpeg_frames = u64::from(u32::from_be_bytes([tag[14], tag[15], tag[16], tag[17]]));
    Some(mpeg_frames * u64::from(header.samples_per_frame))
}

/// Counts samples by hopping from frame header to frame header; bytes that are not a
/// frame of the same stream (tags, junk) are skipped by searching for the next sync.
fn walk_frames(body: &[u8], first: &FrameHeader) -> u64 {
    let mut pos = 0usize;
    let mut samples = 0u64;
    while pos + 4 <= body.len() {
        match FrameHeader::parse(&body[pos..]) {
            Some(h) if h.same_stream(first) && pos + h.frame_len <= body.len() => {
                samples += u64::from(h.samples_per_frame);
                pos += h.frame_len.max(1);
            }
            _ => pos += 1,
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_of_a_128k_44k1_stereo_frame() {
        // 0xFFFB: MPEG1 layer III, no CRC; 0x90: 128 kbps, 44.1 kHz; 0x64: joint stereo.
        let h = FrameHeader::parse(&[0xFF, 0xFB, 0x90, 0x64]).unwrap();
        assert_eq!(h.sample_rate_hz, 44_100);
        assert_eq!(h.frame_len, 417);
        assert_eq!(h.samples_per_frame, 1152);
        assert_eq!(h.channels, 2);
    }

    #[test]
    fn id3_size_is_syncsafe() {
        let tag = [b'I', b'D', b'3', 4, 0, 0, 0, 0, 0x02, 0x01];
        assert_eq!(id3v2_len(&tag), Some(10 + 257));
    }
}
