//! Ogg: the identification header in the first page (Vorbis or Opus) gives rate and
//! channels; the granule position of the stream's last page gives its length in samples
//! (RFC 3533; for Opus the granule counts 48 kHz samples including the pre-skip).

use super::{AudioInfo, Codec, Container, ProbeError, Source};

/// The largest possible Ogg page (27-byte header, 255 lacing values, 255 * 255 bytes).
const MAX_PAGE: u64 = 27 + 255 + 255 * 255;

pub(super) fn probe(source: &mut Source<'_>) -> Result<AudioInfo, ProbeError> {
    let bad = |m: &str| ProbeError::malformed(Container::Ogg, m);
    let head = source.head();
    if head.len() < 27 {
        return Err(bad("first page header is truncated"));
    }
    let serial = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
    let segments = usize::from(head[26]);
    let packet_start = 27 + segments;
    let packet = head
        .get(packet_start..)
        .ok_or_else(|| bad("first page is truncated"))?;
    let (codec, channels, sample_rate_hz, pre_skip) =
        if packet.len() >= 16 && packet[0] == 1 && &packet[1..7] == b"vorbis" {
            let channels = u16::from(packet[11]);
            let rate = u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]);
            (Codec::Vorbis, channels, rate, 0)
        } else if packet.len() >= 19 && &packet[..8] == b"OpusHead" {
            let channels = u16::from(packet[9]);
            let pre_skip = u64::from(u16::from_le_bytes([packet[10], packet[11]]));
            // Opus always decodes at 48 kHz; the header's rate is the original input rate.
            (Codec::Opus, channels, 48_000, pre_skip)
        } else {
            return Err(bad(
                "first packet is neither a Vorbis nor an Opus identification header",
            ));
        };
    if channels == 0 || sample_rate_hz == 0 {
        return Err(bad("identification header has 0 channels or a 0 Hz rate"));
    }
    let len = source.len();
    let tail_start = len.saturating_sub(MAX_PAGE);
    let tail = source.read_vec(tail_start, (len - tail_start) as usize)?;
    let granule = last_granule(&tail, serial);
    let mut header_problem = None;
    let num_frames = match granule {
        Some(g) => Some(g.saturating_sub(pre_skip)),
        None => {
            header_problem = Some(
                "no complete Ogg page with a granule position at the end of the file (truncated?)"
                    .to_string(),
            );
            None
        }
    };
    Ok(AudioInfo {
        container: Container::Ogg,
        codec,
        sample_rate_hz,
        channels,
        bits_per_sample: None,
        num_frames,
        header_problem,
        rf64: false,
    })
}

/// The granule position of the last complete page of stream `serial` in `tail`.
fn last_granule(tail: &[u8], serial: u32) -> Option<u64> {
    let mut end = tail.len();
    while end >= 27 {
        let pos = tail[..end].windows(4).rposition(|w| w == b"OggS")?;
        let page = &tail[pos..];
        if page.len() >= 27 && page[4] == 0 {
            let granule = u64::from_le_bytes(page[6..14].try_into().ok()?);
            let page_serial = u32::from_le_bytes(page[14..18].try_into().ok()?);
            let segments = usize::from(page[26]);
            let complete = page.len() >= 27 + segments && {
                let body: usize = page[27..27 + segments]
                    .iter()
                    .map(|&b| usize::from(b))
                    .sum();
                page.len() >= 27 + segments + body
            };
            if complete && page_serial == serial && granule != u64::MAX {
                return Some(granule);
            }
        }
        end = pos + 3;
    }
    None
}
