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

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use symphonia::core::audio::conv::ConvertibleSample;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};

use crate::probe::{self, AudioInfo, Codec, Container, ProbeError};

/// Decoded audio: interleaved samples with their layout; `S` is `f32` in [-1, 1]
/// ([`DecodedAudio`]) or `i16` ([`DecodedPcm16`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded<S> {
    /// Interleaved samples, `num_frames() * channels` of them.
    pub samples: Vec<S>,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Sample rate in Hz.
    pub sample_rate_hz: u32,
}

/// Decoded audio as `f32` samples in [-1, 1].
pub type DecodedAudio = Decoded<f32>;

/// Decoded audio as int16 (see [`decodes_exactly_to_i16`] and [`decode_bytes_i16_into`]).
pub type DecodedPcm16 = Decoded<i16>;

impl<S> Decoded<S> {
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
}

impl DecodedAudio {
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
    check_decodable(info)?;
    let (mut file, len) = probe::open_audio_file(path)?;
    let mut patches = Vec::new();
    if info.container == Container::Mp3 {
        // Skip an ID3v2 tag: the MPEG reader expects frames from the start.
        let mut head = [0u8; 10];
        let n = file.read(&mut head).map_err(ProbeError::from)?;
        let skip = crate::probe::id3v2_skip(&head[..n]);
        file.seek(SeekFrom::Start(skip)).map_err(ProbeError::from)?;
    } else if info.container == Container::Wav && !info.rf64 {
        let mut head = vec![0u8; len.min(4096) as usize];
        file.read_exact(&mut head).map_err(ProbeError::from)?;
        patches = probe::stream_patches(Some(&mut file), &head, len)?;
        file.seek(SeekFrom::Start(0)).map_err(ProbeError::from)?;
    }
    let mss = patched_stream(file, patches, len);
    decode_stream(
        mss,
        info,
        &mut out.samples,
        &mut out.channels,
        &mut out.sample_rate_hz,
    )
}

/// Decodes an audio file held in memory (all its bytes, probed with
/// [`probe::probe_bytes`]) into `out`, with the checks of [`decode_probed_into`]. Reading a
/// file whole once and probing and decoding it from memory saves the opens and small
/// reads of probing and decoding from the file (see `asr-pack`).
pub fn decode_bytes_into(
    bytes: &[u8],
    info: &AudioInfo,
    out: &mut DecodedAudio,
) -> Result<(), DecodeError> {
    decode_memory_into(bytes, info, out)
}

/// True when decoding straight to int16 ([`decode_bytes_i16_into`]) gives exactly the
/// samples that decoding to `f32` and quantizing (`x * 32768`, rounded) would: FLAC and
/// signed 16-bit PCM of at most 16 bits, whose samples are int16 values to begin with.
/// For these, the int16 path skips two conversions and halves the memory traffic.
pub fn decodes_exactly_to_i16(info: &AudioInfo) -> bool {
    matches!(info.codec, Codec::Flac | Codec::PcmS16le)
        && info.bits_per_sample.is_some_and(|bits| bits <= 16)
        && !(info.container == Container::Wav && info.rf64)
}

/// Like [`decode_bytes_into`], to int16 samples. Exact only when
/// [`decodes_exactly_to_i16`] holds; for other sources symphonia's conversion truncates
/// (24-bit and float sources) or widens, so decode those to `f32`.
pub fn decode_bytes_i16_into(
    bytes: &[u8],
    info: &AudioInfo,
    out: &mut DecodedPcm16,
) -> Result<(), DecodeError> {
    decode_memory_into(bytes, info, out)
}

fn decode_memory_into<S: ConvertibleSample + Default + Copy>(
    bytes: &[u8],
    info: &AudioInfo,
    out: &mut Decoded<S>,
) -> Result<(), DecodeError> {
    check_decodable(info)?;
    decode_stream(
        memory_stream(bytes, info),
        info,
        &mut out.samples,
        &mut out.channels,
        &mut out.sample_rate_hz,
    )
}

fn check_decodable(info: &AudioInfo) -> Result<(), DecodeError> {
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
    Ok(())
}

/// A stream over in-memory file bytes (past an MP3's ID3v2 tag).
fn memory_stream<'a>(bytes: &'a [u8], info: &AudioInfo) -> MediaSourceStream<'a> {
    let skip = if info.container == Container::Mp3 {
        usize::try_from(crate::probe::id3v2_skip(&bytes[..bytes.len().min(10)]))
            .unwrap_or(usize::MAX)
            .min(bytes.len())
    } else {
        0
    };
    let cursor = Cursor::new(&bytes[skip..]);
    let patches = if info.container == Container::Wav && !info.rf64 {
        // An in-memory source cannot fail to read its own head.
        probe::stream_patches(None, bytes, bytes.len() as u64).unwrap_or_default()
    } else {
        Vec::new()
    };
    patched_stream(cursor, patches, bytes.len() as u64)
}

/// The stream symphonia reads: `reader` as it is, or with `patches` applied.
fn patched_stream<'a, R: MediaSource + 'a>(
    reader: R,
    patches: Vec<(u64, [u8; 4])>,
    len: u64,
) -> MediaSourceStream<'a> {
    let source: Box<dyn MediaSource + 'a> = if patches.is_empty() {
        Box::new(reader)
    } else {
        Box::new(Patched::new(reader, patches, len))
    };
    MediaSourceStream::new(source, MediaSourceStreamOptions::default())
}

/// A file or buffer read with a few header bytes replaced (see
/// [`probe::stream_patches`]): lets symphonia decode a streamed WAV to its last sample
/// without copying the file.
struct Patched<R> {
    inner: R,
    patches: Vec<(u64, [u8; 4])>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Patched<R> {
    fn new(inner: R, patches: Vec<(u64, [u8; 4])>, len: u64) -> Self {
        Patched {
            inner,
            patches,
            pos: 0,
            len,
        }
    }
}

impl<R: Read> Read for Patched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let (start, end) = (self.pos, self.pos + n as u64);
        for (at, bytes) in &self.patches {
            for (k, &b) in bytes.iter().enumerate() {
                let offset = at + k as u64;
                if (start..end).contains(&offset) {
                    buf[(offset - start) as usize] = b;
                }
            }
        }
        self.pos = end;
        Ok(n)
    }
}

impl<R: Seek> Seek for Patched<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for Patched<R> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

fn decoded_seconds(samples: usize, channels: u16, rate: u32) -> f64 {
    if channels == 0 || rate == 0 {
        0.0
    } else {
        (samples / usize::from(channels)) as f64 / f64::from(rate)
    }
}

/// Decodes every packet of `mss` into `samples` (cleared first), interleaved, converted
/// to `S`; sets `channels` and `rate`; checks the length against the header's.
fn decode_stream<S: ConvertibleSample + Default + Copy>(
    mss: MediaSourceStream<'_>,
    info: &AudioInfo,
    samples: &mut Vec<S>,
    channels: &mut u16,
    rate: &mut u32,
) -> Result<(), DecodeError> {
    samples.clear();
    *channels = info.channels;
    *rate = info.sample_rate_hz;
    let corrupt =
        |samples: &Vec<S>, channels: u16, rate: u32, message: String| DecodeError::Corrupt {
            decoded_s: decoded_seconds(samples.len(), channels, rate),
            message,
        };
    let opts = FormatOptions::default();
    let reader: Result<Box<dyn FormatReader + '_>, SymphoniaError> = match info.container {
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
        Some(problem) => corrupt(
            samples,
            *channels,
            *rate,
            format!("{problem} (the decoder: {e})"),
        ),
        None => corrupt(
            samples,
            *channels,
            *rate,
            format!("cannot open the stream: {e}"),
        ),
    })?;
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| corrupt(samples, *channels, *rate, "no audio track".into()))?;
    let track_id = track.id;
    let params = match &track.codec_params {
        Some(CodecParameters::Audio(p)) => p.clone(),
        _ => {
            return Err(corrupt(
                samples,
                *channels,
                *rate,
                "no audio codec parameters".into(),
            ))
        }
    };
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| {
            corrupt(
                samples,
                *channels,
                *rate,
                format!("cannot create the decoder: {e}"),
            )
        })?;
    if let Some(n) = info.num_frames {
        // Exact for lossless formats; lossy ones may differ by a frame or so.
        let want = (n as usize)
            .saturating_mul(usize::from(info.channels))
            .min(1 << 30);
        samples.reserve(want + 4096);
    }
    let mut channels_seen: Option<usize> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt(
                    samples,
                    *channels,
                    *rate,
                    "truncated: the file ends in the middle of a packet".into(),
                ))
            }
            Err(e) => {
                return Err(corrupt(
                    samples,
                    *channels,
                    *rate,
                    format!("cannot read a packet: {e}"),
                ))
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(e) => {
                return Err(corrupt(
                    samples,
                    *channels,
                    *rate,
                    format!("decoding failed: {e}"),
                ))
            }
        };
        let planes = buf.num_planes();
        if planes == 0 || buf.frames() == 0 {
            continue;
        }
        match channels_seen {
            None => {
                channels_seen = Some(planes);
                *channels = u16::try_from(planes).unwrap_or(u16::MAX);
                *rate = buf.spec().rate();
            }
            Some(c) if c != planes => {
                return Err(corrupt(
                    samples,
                    *channels,
                    *rate,
                    format!("channel count changes mid-stream ({c} -> {planes})"),
                ))
            }
            Some(_) => {}
        }
        let start = samples.len();
        samples.resize(start + buf.samples_interleaved(), S::default());
        buf.copy_to_slice_interleaved(&mut samples[start..]);
    }
    if let Some(declared) = info.num_frames {
        let decoded = (samples.len() / usize::from((*channels).max(1))) as u64;
        let lossless = matches!(info.container, Container::Flac | Container::Wav);
        let tolerance = if lossless {
            0
        } else {
            (declared / 100).max(2 * 1152 + 529)
        };
        if decoded + tolerance < declared {
            let rate = f64::from(info.sample_rate_hz.max(1));
            return Err(corrupt(
                samples,
                *channels,
                info.sample_rate_hz,
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
