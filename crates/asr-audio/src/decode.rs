//! Full decoding with symphonia (FLAC, WAV, MP3, Ogg/Vorbis) to interleaved `f32` in
//! [-1, 1], plus downmixing to mono.
//!
//! Decoding is strict: the first malformed packet, an I/O error mid-stream, or a stream
//! that ends before the length its header declares is an error that says how far the
//! decoder got. Nothing is skipped silently, so a truncated download or a file with a
//! corrupt body never reaches training as a shorter clip.
//!
//! The container is identified by [`crate::probe`] (from the bytes, not the extension)
//! and the matching symphonia reader is built directly, so no format guessing is repeated;
//! the output buffer is sized from the header's frame count before decoding starts.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};

use crate::probe::{self, AudioInfo, Codec, Container, ProbeError};

/// Decoded audio: interleaved samples in [-1, 1] with their layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved samples, `num_frames() * channels` of them.
    pub samples: Vec<f32>,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Sample rate in Hz.
    pub sample_rate_hz: u32,
}

impl DecodedAudio {
    /// Frames (samples per channel).
    pub fn num_frames(&self) -> usize {
        if self.channels == 0 {
            0
        } else {
            self.samples.len() / usize::from(self.channels)
        }
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate_hz == 0 {
            0.0
        } else {
            self.num_frames() as f64 / f64::from(self.sample_rate_hz)
        }
    }

    /// The mono mix (mean of the channels); a copy when already mono.
    pub fn to_mono(&self) -> Vec<f32> {
        let mut out = Vec::new();
        downmix_to_mono_into(&self.samples, usize::from(self.channels), &mut out);
        out
    }
}

/// Why decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The headers could not be read (missing file, unknown format, malformed header).
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The codec is recognised but not decodable here (Opus, MPEG layers I/II).
    #[error("{what} audio cannot be decoded by this toolkit; convert it to FLAC or WAV")]
    Unsupported {
        /// The codec found in the header.
        codec: Codec,
        /// What is unsupported (the codec, or a container variant such as RF64).
        what: &'static str,
    },
    /// The stream is broken: a malformed packet, an I/O error, or fewer samples than the
    /// header declares. `decoded_s` says how much decoded cleanly before the problem.
    #[error("{message} (after {decoded_s:.2} s of audio decoded)")]
    Corrupt {
        /// Seconds of audio decoded before the failure.
        decoded_s: f64,
        /// What went wrong.
        message: String,
    },
}

/// Decodes a whole file to interleaved `f32`.
pub fn decode_file(path: &Path) -> Result<DecodedAudio, DecodeError> {
    let mut out = DecodedAudio::default();
    decode_file_into(path, &mut out)?;
    Ok(out)
}

/// Decodes a whole file into `out`, reusing its allocation (for loops over many files).
/// Returns the header information the decode was checked against.
pub fn decode_file_into(path: &Path, out: &mut DecodedAudio) -> Result<AudioInfo, DecodeError> {
    let info = probe::probe_file(path)?;
    decode_probed_into(path, &info, out)?;
    Ok(info)
}

/// Decodes a file whose header was already probed (`info` from [`probe::probe_file`] on
/// the same file) into `out`, checking the decoded length against the header's.
pub fn decode_probed_into(
    path: &Path,
    info: &AudioInfo,
    out: &mut DecodedAudio,
) -> Result<(), DecodeError> {
    if !info.codec.is_decodable() {
        return Err(DecodeError::Unsupported {
            codec: info.codec,
            what: info.codec.as_str(),
        });
    }
    if info.container == Container::Wav && info.rf64 {
        return Err(DecodeError::Unsupported {
            codec: info.codec,
            what: "RF64/BW64 WAV",
        });
    }
    let mut file = File::open(path).map_err(ProbeError::from)?;
    if info.container == Container::Mp3 {
        // Skip an ID3v2 tag: the MPEG reader expects frames from the start.
        let mut head = [0u8; 10];
        let n = std::io::Read::read(&mut file, &mut head).map_err(ProbeError::from)?;
        let skip = crate::probe::id3v2_skip(&head[..n]);
        file.seek(SeekFrom::Start(skip)).map_err(ProbeError::from)?;
    }
    let mss = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
    out.samples.clear();
    out.channels = info.channels;
    out.sample_rate_hz = info.sample_rate_hz;
    let corrupt = |out: &DecodedAudio, message: String| DecodeError::Corrupt {
        decoded_s: out.duration_s(),
        message,
    };
    let opts = FormatOptions::default();
    let reader: Result<Box<dyn FormatReader>, SymphoniaError> = match info.container {
        Container::Flac => symphonia::default::formats::FlacReader::try_new(mss, opts)
            .map(|r| Box::new(r) as Box<dyn FormatReader>),
        Container::Wav => symphonia::default::formats::WavReader::try_new(mss, opts)
            .map(|r| Box::new(r) as Box<dyn FormatReader>),
        Container::Mp3 => symphonia::default::formats::MpaReader::try_new(mss, opts)
            .map(|r| Box::new(r) as Box<dyn FormatReader>),
        Container::Ogg => symphonia::default::formats::OggReader::try_new(mss, opts)
            .map(|r| Box::new(r) as Box<dyn FormatReader>),
    };
    let mut reader = reader.map_err(|e| match &info.header_problem {
        // The header probe already knows why (a truncated WAV, say): say that first.
        Some(problem) => corrupt(out, format!("{problem} (the decoder: {e})")),
        None => corrupt(out, format!("cannot open the stream: {e}")),
    })?;
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| corrupt(out, "no audio track".into()))?;
    let track_id = track.id;
    let params = match &track.codec_params {
        Some(CodecParameters::Audio(p)) => p.clone(),
        _ => return Err(corrupt(out, "no audio codec parameters".into())),
    };
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| corrupt(out, format!("cannot create the decoder: {e}")))?;
    if let Some(n) = info.num_frames {
        // Exact for lossless formats; lossy ones may differ by a frame or so.
        let want = (n as usize)
            .saturating_mul(usize::from(info.channels))
            .min(1 << 30);
        out.samples.reserve(want + 4096);
    }
    let mut channels_seen: Option<usize> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt(
                    out,
                    "truncated: the file ends in the middle of a packet".into(),
                ))
            }
            Err(e) => return Err(corrupt(out, format!("cannot read a packet: {e}"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder
            .decode(&packet)
            .map_err(|e| corrupt(out, format!("decoding failed: {e}")))?;
        let planes = buf.num_planes();
        if planes == 0 || buf.frames() == 0 {
            continue;
        }
        match channels_seen {
            None => {
                channels_seen = Some(planes);
                out.channels = u16::try_from(planes).unwrap_or(u16::MAX);
                out.sample_rate_hz = buf.spec().rate();
            }
            Some(c) if c != planes => {
                return Err(corrupt(
                    out,
                    format!("channel count changes mid-stream ({c} -> {planes})"),
                ))
            }
            Some(_) => {}
        }
        let start = out.samples.len();
        out.samples.resize(start + buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut out.samples[start..]);
    }
    if let Some(declared) = info.num_frames {
        let decoded = out.num_frames() as u64;
        let lossless = matches!(info.container, Container::Flac | Container::Wav);
        let tolerance = if lossless {
            0
        } else {
            (declared / 100).max(2 * 1152 + 529)
        };
        if decoded + tolerance < declared {
            let rate = f64::from(info.sample_rate_hz.max(1));
            return Err(corrupt(
                out,
                format!(
                    "truncated: the header declares {:.2} s but the stream ends after {:.2} s",
                    declared as f64 / rate,
                    decoded as f64 / rate
                ),
            ));
        }
    }
    Ok(())
}

/// Mixes interleaved `channels`-channel audio down to mono (the mean of the channels)
/// into `out`, replacing its contents.
pub fn downmix_to_mono_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    out.clear();
    match channels {
        0 => {}
        1 => out.extend_from_slice(interleaved),
        2 => out.extend(interleaved.chunks_exact(2).map(|f| 0.5 * (f[0] + f[1]))),
        n => {
            let scale = 1.0 / n as f32;
            out.extend(
                interleaved
                    .chunks_exact(n)
                    .map(|f| f.iter().sum::<f32>() * scale),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix_to_mono_into(&[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5, 0.0]);
        downmix_to_mono_into(&[0.3, 0.3, 0.3], 3, &mut out);
        assert!((out[0] - 0.3).abs() < 1e-6);
        downmix_to_mono_into(&[0.25, -0.25], 1, &mut out);
        assert_eq!(out, vec![0.25, -0.25]);
    }
}
