//! Header-only probe: duration, sample rate, channels, codec and sample width of an audio
//! file, read from its headers without decoding a single sample.
//!
//! Each container has a hand-written parser (`flac`, `wav`, `mp3`, `ogg` submodules): a
//! FLAC STREAMINFO block or a WAV `fmt `/`data` pair is a few dozen bytes at the start of
//! the file, so a probe costs one `open` and one small `read`, which is what lets
//! `asr-data validate` look at tens of thousands of files per second. MP3 uses the
//! Xing/Info or VBRI header when the encoder wrote one, otherwise it walks the frame
//! headers (reading the file, still without decoding). OGG reads the identification
//! header on the first page and the granule position of the last page.
//!
//! The container is recognised from the file's first bytes (its magic), never from its
//! extension, so a `.wav` that is really an MP3 is probed as what it is.

mod flac;
mod mp3;
mod ogg;
mod wav;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many bytes a probe reads first; enough for every header we parse in the common case.
const HEAD_BYTES: usize = 4096;

/// The container format of an audio file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// Native FLAC stream (`fLaC`).
    Flac,
    /// RIFF/WAVE, RF64 or BW64.
    Wav,
    /// MPEG audio elementary stream (optionally with ID3 tags).
    Mp3,
    /// Ogg (Vorbis or Opus inside).
    Ogg,
}

/// The audio codec, named as ffmpeg names it (`flac`, `pcm_s16le`, `mp3`, `vorbis`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// FLAC.
    Flac,
    /// Unsigned 8-bit PCM.
    PcmU8,
    /// Signed 16-bit little-endian PCM.
    PcmS16le,
    /// Signed 24-bit little-endian PCM.
    PcmS24le,
    /// Signed 32-bit little-endian PCM.
    PcmS32le,
    /// 32-bit float PCM.
    PcmF32le,
    /// 64-bit float PCM.
    PcmF64le,
    /// G.711 A-law.
    PcmAlaw,
    /// G.711 mu-law.
    PcmMulaw,
    /// MPEG-1/2 Layer III.
    Mp3,
    /// MPEG-1/2 Layer II.
    Mp2,
    /// MPEG-1/2 Layer I.
    Mp1,
    /// Vorbis.
    Vorbis,
    /// Opus (probed, but not decodable by this toolkit).
    Opus,
}

impl Codec {
    /// The ffmpeg-style name (`pcm_s16le`, `flac`, ...), as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Flac => "flac",
            Codec::PcmU8 => "pcm_u8",
            Codec::PcmS16le => "pcm_s16le",
            Codec::PcmS24le => "pcm_s24le",
            Codec::PcmS32le => "pcm_s32le",
            Codec::PcmF32le => "pcm_f32le",
            Codec::PcmF64le => "pcm_f64le",
            Codec::PcmAlaw => "pcm_alaw",
            Codec::PcmMulaw => "pcm_mulaw",
            Codec::Mp3 => "mp3",
            Codec::Mp2 => "mp2",
            Codec::Mp1 => "mp1",
            Codec::Vorbis => "vorbis",
            Codec::Opus => "opus",
        }
    }

    /// Whether [`crate::decode`] can decode this codec.
    pub fn is_decodable(self) -> bool {
        !matches!(self, Codec::Opus | Codec::Mp1 | Codec::Mp2)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the headers of an audio file say about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    /// Container format.
    pub container: Container,
    /// Codec of the (first) audio stream.
    pub codec: Codec,
    /// Sample rate in Hz.
    pub sample_rate_hz: u32,
    /// Number of channels.
    pub channels: u16,
    /// Bits per sample for PCM and FLAC; `None` for lossy codecs.
    pub bits_per_sample: Option<u16>,
    /// Frames (samples per channel) the headers declare; `None` when they do not say
    /// (a FLAC stream written without its total, say).
    pub num_frames: Option<u64>,
    /// A structural problem visible without decoding, e.g. a WAV whose `data` chunk
    /// declares more bytes than the file holds (a truncated download).
    pub header_problem: Option<String>,
    /// True for a WAV in the RF64/BW64 variant (files over 4 GB), which the header probe
    /// reads but the decoder does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rf64: bool,
}

impl AudioInfo {
    /// Duration in seconds, when the headers give the length.
    pub fn duration_s(&self) -> Option<f64> {
        match self.num_frames {
            Some(n) if self.sample_rate_hz > 0 => Some(n as f64 / f64::from(self.sample_rate_hz)),
            _ => None,
        }
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The file could not be opened or read (not found, permission denied, ...).
    #[error("cannot read audio file: {0}")]
    Io(#[from] io::Error),
    /// The file is shorter than any audio header (for example 0 bytes).
    #[error("file is empty or too short to hold an audio header ({len} bytes)")]
    TooShort {
        /// File length in bytes.
        len: u64,
    },
    /// The path names a FIFO, a device, a socket or a folder: reading it could block
    /// forever (a FIFO with no writer) or never end (a device), so it is not opened for
    /// reading at all.
    #[error("{} is a {kind}, not a regular file; a row must name an audio file", path.display())]
    NotAFile {
        /// The path as given.
        path: PathBuf,
        /// What it is instead: `FIFO (named pipe)`, `folder`, `device`, `socket`.
        kind: &'static str,
    },
    /// The first bytes match no supported container.
    #[error("not a FLAC, WAV, MP3 or OGG file (first bytes: {magic})")]
    UnknownFormat {
        /// The first bytes in hex.
        magic: String,
    },
    /// The container was recognised but its header is malformed.
    #[error("malformed {container:?} header: {message}")]
    Malformed {
        /// The recognised container.
        container: Container,
        /// What is wrong.
        message: String,
    },
}

impl ProbeError {
    /// True when the file does not exist (a dangling path, not a broken file).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProbeError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    fn malformed(container: Container, message: impl Into<String>) -> ProbeError {
        ProbeError::Malformed {
            container,
            message: message.into(),
        }
    }
}

/// Random access to the probed file: its first bytes in memory, the rest on demand.
pub(crate) struct Source<'a> {
    file: Option<&'a mut File>,
    head: &'a [u8],
    len: u64,
}

impl Source<'_> {
    /// Reads up to `buf.len()` bytes at `offset`, returning how many were read (short at
    /// the end of the file).
    pub(crate) fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let head_len = self.head.len() as u64;
        if offset + buf.len() as u64 <= head_len {
            let start = offset as usize;
            buf.copy_from_slice(&self.head[start..start + buf.len()]);
            return Ok(buf.len());
        }
        let Some(file) = self.file.as_deref_mut() else {
            // In-memory source: copy what there is.
            let start = offset.min(head_len) as usize;
            let n = (self.head.len() - start).min(buf.len());
            buf[..n].copy_from_slice(&self.head[start..start + n]);
            return Ok(n);
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    /// Reads the whole range `offset..offset+len` (clamped to the file) into a vector.
    pub(crate) fn read_vec(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let len = len.min(self.len.saturating_sub(offset) as usize);
        let mut buf = vec![0; len];
        let n = self.read_at(offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Length of the file in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The bytes read at open time (the first `HEAD_BYTES` or the whole file).
    pub(crate) fn head(&self) -> &[u8] {
        self.head
    }
}

/// Probes an audio file's headers. Reads a few KB (MP3 without a Xing/VBRI header: the
/// frame headers through the file); decodes nothing.
pub fn probe_file(path: &Path) -> Result<AudioInfo, ProbeError> {
    let (mut file, len) = open_audio_file(path)?;
    let mut head = [0u8; HEAD_BYTES];
    let want = (len as usize).min(HEAD_BYTES);
    file.read_exact(&mut head[..want])?;
    let mut source = Source {
        file: Some(&mut file),
        head: &head[..want],
        len,
    };
    probe_source(&mut source)
}

/// Opens `path` for reading if it is a regular file (symlinks followed), and returns it
/// with its length; anything else is [`ProbeError::NotAFile`], found without blocking:
/// on Unix the file is opened non-blocking (so a FIFO with no writer does not hang the
/// open) and checked with `fstat` on the open descriptor (so nothing can swap the path
/// between the check and the read). Every read of an audio file in this crate goes
/// through here; callers that read audio themselves should too.
pub fn open_audio_file(path: &Path) -> Result<(File, u64), ProbeError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Ignored for regular files; makes opening a FIFO return at once.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(ProbeError::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(&metadata.file_type()),
        });
    }
    Ok((file, metadata.len()))
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO (named pipe)";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "device";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

/// Probes an in-memory audio file (the whole file's bytes).
pub fn probe_bytes(bytes: &[u8]) -> Result<AudioInfo, ProbeError> {
    let mut source = Source {
        file: None,
        head: bytes,
        len: bytes.len() as u64,
    };
    probe_source(&mut source)
}

/// Header bytes to show the decoder instead of the file's: for a WAV written by a
/// streaming writer (sizes 0 or 0xFFFFFFFF), the sizes of what the file holds (see
/// `wav::streamed_size_patches`); empty for anything else. `file` is read from its start
/// and left at an unspecified position; `None` when `head` is the whole file.
pub(crate) fn stream_patches(
    file: Option<&mut File>,
    head: &[u8],
    len: u64,
) -> Result<Vec<(u64, [u8; 4])>, ProbeError> {
    if head.len() < 12 || &head[..4] != b"RIFF" {
        return Ok(Vec::new());
    }
    let mut source = Source { file, head, len };
    wav::streamed_size_patches(&mut source)
}

fn probe_source(source: &mut Source<'_>) -> Result<AudioInfo, ProbeError> {
    let head = source.head();
    if head.len() < 4 {
        return Err(ProbeError::TooShort { len: source.len() });
    }
    match &head[..4] {
        b"fLaC" => flac::probe(source, 0),
        b"RIFF" | b"RF64" | b"BW64" => wav::probe(source),
        b"OggS" => ogg::probe(source),
        b"ID3\x03" | b"ID3\x04" | b"ID3\x02" => {
            // An ID3v2 tag in front of MP3 (the usual case) or, rarely, FLAC.
            let skip = mp3::id3v2_len(head).unwrap_or(0);
            let mut magic = [0u8; 4];
            if source.read_at(skip, &mut magic)? == 4 && &magic == b"fLaC" {
                flac::probe(source, skip)
            } else {
                mp3::probe(source)
            }
        }
        _ if head[0] == 0xFF && head[1] & 0xE0 == 0xE0 => mp3::probe(source),
        _ => Err(ProbeError::UnknownFormat {
            magic: hex_prefix(head),
        }),
    }
}

/// Bytes to skip before the audio stream: the length of an ID3v2 tag at the start of
/// `head` (its first 10 bytes suffice), or 0.
pub(crate) fn id3v2_skip(head: &[u8]) -> u64 {
    mp3::id3v2_len(head).unwrap_or(0)
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_unknown_format_not_a_panic() {
        assert!(matches!(
            probe_bytes(b"hello world"),
            Err(ProbeError::UnknownFormat { .. })
        ));
        assert!(matches!(
            probe_bytes(b""),
            Err(ProbeError::TooShort { len: 0 })
        ));
        assert!(matches!(
            probe_bytes(b"fLa"),
            Err(ProbeError::TooShort { len: 3 })
        ));
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = probe_file(Path::new("/nonexistent/definitely/missing.flac")).unwrap_err();
        assert!(err.is_not_found());
    }
}
