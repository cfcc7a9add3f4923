//! WAV: RIFF/WAVE (and RF64/BW64 for files over 4 GB). Walks the chunk list for `fmt `
//! and `data`; `WAVE_FORMAT_EXTENSIBLE` takes its real format from the sub-format GUID.

use super::{AudioInfo, Codec, Container, ProbeError, Source};

const FORMAT_PCM: u16 = 0x0001;
const FORMAT_FLOAT: u16 = 0x0003;
const FORMAT_ALAW: u16 = 0x0006;
const FORMAT_MULAW: u16 = 0x0007;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// At most this many chunks are walked before giving up (a garbage file cannot loop us).
const MAX_CHUNKS: usize = 1024;

struct Fmt {
    format: u16,
    channels: u16,
    sample_rate_hz: u32,
    block_align: u16,
    bits_per_sample: u16,
}

/// Where a WAV's chunks are: what the probe and the decoder's header patch need.
struct Layout {
    fmt: Fmt,
    is_rf64: bool,
    /// Offset of the `data` chunk's body.
    body: u64,
    /// The `data` chunk's size field as written.
    size: u64,
    /// The ds64 chunk's data size (RF64).
    rf64_data_size: Option<u64>,
}

/// A size field that means "unknown, to the end of the file": streaming writers (ffmpeg
/// `-f wav -`, sox to a pipe) cannot seek back to fill it in and leave 0 or 0xFFFFFFFF.
fn is_streamed_size(size: u64) -> bool {
    size == 0 || size == 0xFFFF_FFFF
}

fn locate(source: &mut Source<'_>) -> Result<Layout, ProbeError> {
    let bad = |m: String| ProbeError::malformed(Container::Wav, m);
    let head = source.head();
    if head.len() < 12 || &head[8..12] != b"WAVE" {
        return Err(bad("RIFF file is not WAVE".into()));
    }
    let is_rf64 = &head[..4] != b"RIFF";
    let mut rf64_data_size: Option<u64> = None;
    let mut fmt: Option<Fmt> = None;
    let mut offset = 12u64;
    let file_len = source.len();
    for _ in 0..MAX_CHUNKS {
        let mut header = [0u8; 8];
        if source.read_at(offset, &mut header)? < 8 {
            break;
        }
        let id = [header[0], header[1], header[2], header[3]];
        let size = u64::from(u32::from_le_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        let body = offset + 8;
        match &id {
            b"ds64" => {
                let ds = source.read_vec(body, 16)?;
                if ds.len() < 16 {
                    return Err(bad("ds64 chunk is truncated".into()));
                }
                rf64_data_size = Some(u64::from_le_bytes(ds[8..16].try_into().unwrap_or([0; 8])));
            }
            b"fmt " => {
                let raw = source.read_vec(body, size.min(40) as usize)?;
                fmt = Some(parse_fmt(&raw).map_err(bad)?);
            }
            b"data" => {
                let Some(fmt) = fmt else {
                    return Err(bad("data chunk comes before the fmt chunk".into()));
                };
                return Ok(Layout {
                    fmt,
                    is_rf64,
                    body,
                    size,
                    rf64_data_size,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        offset = body + size + (size & 1);
        if offset >= file_len {
            break;
        }
    }
    Err(bad(if fmt.is_none() {
        "no fmt chunk".into()
    } else {
        "no data chunk".into()
    }))
}

pub(super) fn probe(source: &mut Source<'_>) -> Result<AudioInfo, ProbeError> {
    let layout = locate(source)?;
    let available = source.len().saturating_sub(layout.body);
    let declared = if layout.is_rf64 && layout.size == 0xFFFF_FFFF {
        layout.rf64_data_size.unwrap_or(available)
    } else {
        layout.size
    };
    let mut header_problem = None;
    let data_len = if is_streamed_size(declared) {
        available
    } else if declared > available {
        header_problem = Some(format!(
            "truncated: the data chunk declares {declared} bytes but the file holds {available}"
        ));
        available
    } else {
        declared
    };
    info(layout.fmt, data_len, header_problem, layout.is_rf64)
        .map_err(|m| ProbeError::malformed(Container::Wav, m))
}

/// The header bytes a decoder must see instead of the file's for a WAV written by a
/// streaming writer: the RIFF and `data` sizes replaced by what the file
/// holds, so the decoder stops at the end of the file instead of failing on a read past it
/// (0xFFFFFFFF) or reading nothing (0). `(offset, bytes)` pairs; empty for other WAVs.
pub(crate) fn streamed_size_patches(
    source: &mut Source<'_>,
) -> Result<Vec<(u64, [u8; 4])>, ProbeError> {
    let layout = locate(source)?;
    if layout.is_rf64 || !is_streamed_size(layout.size) {
        return Ok(Vec::new());
    }
    let clamp = |n: u64| u32::try_from(n.min(0xFFFF_FFFE)).unwrap_or(0xFFFF_FFFE);
    let available = source.len().saturating_sub(layout.body);
    // The RIFF size too: a streaming writer leaves it at 0xFFFFFFFF, 0, or the size of
    // the header alone, none of which covers the data.
    Ok(vec![
        (4, clamp(source.len().saturating_sub(8)).to_le_bytes()),
        (layout.body - 4, clamp(available).to_le_bytes()),
    ])
}

fn parse_fmt(raw: &[u8]) -> Result<Fmt, String> {
    if raw.len() < 16 {
        return Err(format!(
            "fmt chunk is {} bytes, expected at least 16",
            raw.len()
        ));
    }
    let u16_at = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
    let mut format = u16_at(0);
    let channels = u16_at(2);
    let sample_rate_hz = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let block_align = u16_at(12);
    let bits_per_sample = u16_at(14);
    if format == FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the GUID whose first two bytes
        // are the real format tag.
        if raw.len() < 26 {
            return Err("WAVE_FORMAT_EXTENSIBLE fmt chunk is too short".into());
        }
        format = u16_at(24);
    }
    if channels == 0 {
        return Err("0 channels".into());
    }
    if sample_rate_hz == 0 {
        return Err("sample rate is 0".into());
    }
    if block_align == 0 {
        return Err("block align is 0".into());
    }
    Ok(Fmt {
        format,
        channels,
        sample_rate_hz,
        block_align,
        bits_per_sample,
    })
}

fn info(
    fmt: Fmt,
    data_len: u64,
    header_problem: Option<String>,
    rf64: bool,
) -> Result<AudioInfo, String> {
    let codec = match (fmt.format, fmt.bits_per_sample) {
        (FORMAT_PCM, 8) => Codec::PcmU8,
        (FORMAT_PCM, 16) => Codec::PcmS16le,
        (FORMAT_PCM, 24) => Codec::PcmS24le,
        (FORMAT_PCM, 32) => Codec::PcmS32le,
        (FORMAT_FLOAT, 32) => Codec::PcmF32le,
        (FORMAT_FLOAT, 64) => Codec::PcmF64le,
        (FORMAT_ALAW, 8) => Codec::PcmAlaw,
        (FORMAT_MULAW, 8) => Codec::PcmMulaw,
        (format, bits) => {
            return Err(format!(
                "unsupported WAV format tag 0x{format:04x} with {bits} bits per sample"
            ))
        }
    };
    Ok(AudioInfo {
        container: Container::Wav,
        codec,
        sample_rate_hz: fmt.sample_rate_hz,
        channels: fmt.channels,
        bits_per_sample: Some(fmt.bits_per_sample),
        num_frames: Some(data_len / u64::from(fmt.block_align)),
        header_problem,
        rf64,
    })
}
