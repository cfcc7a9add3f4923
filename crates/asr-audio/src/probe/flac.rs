//! FLAC: the mandatory STREAMINFO metadata block right after the `fLaC` marker.
//! Layout: RFC 9639 section 8.2 (sample rate 20 bits, channels-1 3 bits, bits-1 5 bits,
//! total samples 36 bits).

use super::{AudioInfo, Codec, Container, ProbeError, Source};

pub(super) fn probe(source: &mut Source<'_>, start: u64) -> Result<AudioInfo, ProbeError> {
    let bad = |m: &str| ProbeError::malformed(Container::Flac, m);
    // "fLaC" + 4-byte metadata block header + 34-byte STREAMINFO.
    let mut block = [0u8; 42];
    let n = source.read_at(start, &mut block)?;
    if n < block.len() {
        return Err(bad("file ends inside the STREAMINFO block"));
    }
    let block_type = block[4] & 0x7F;
    let block_len = u32::from_be_bytes([0, block[5], block[6], block[7]]);
    if block_type != 0 || block_len < 34 {
        return Err(bad("first metadata block is not STREAMINFO"));
    }
    let info = &block[8..42];
    let sample_rate_hz =
        (u32::from(info[10]) << 12) | (u32::from(info[11]) << 4) | (u32::from(info[12]) >> 4);
    let channels = u16::from((info[12] >> 1) & 0x07) + 1;
    let bits_per_sample = ((u16::from(info[12] & 0x01) << 4) | u16::from(info[13] >> 4)) + 1;
    let total = (u64::from(info[13] & 0x0F) << 32)
        | u64::from(u32::from_be_bytes([info[14], info[15], info[16], info[17]]));
    if sample_rate_hz == 0 {
        return Err(bad("sample rate is 0"));
    }
    // A total of 0 means "unknown" in STREAMINFO (streamed encodes).
    let num_frames = (total != 0).then_some(total);
    // An audio stream always follows the metadata; a file that ends right after the
    // header while declaring samples has lost its audio.
    let header_problem = match num_frames {
        Some(frames) if source.len() <= start + 42 => Some(format!(
            "the header declares {frames} samples but the file ends after the header"
        )),
        _ => None,
    };
    Ok(AudioInfo {
        container: Container::Flac,
        codec: Codec::Flac,
        sample_rate_hz,
        channels,
        bits_per_sample: Some(bits_per_sample),
        num_frames,
        header_problem,
        rf64: false,
    })
}
