//! Audio for speech corpora: a header-only probe (duration, sample rate, channels, codec
//! without decoding), full decoding with symphonia (FLAC, WAV, MP3, Ogg/Vorbis) to `f32`,
//! downmix to mono, signal statistics for deep validation, and resampling to 16 kHz.

pub mod decode;
pub mod probe;
pub mod resample;
pub mod signal;

pub use decode::{
    decode_bytes_i16_into, decode_bytes_into, decode_file, decode_file_into, decode_probed_into,
    decodes_exactly_to_i16, downmix_to_mono_into, DecodeError, Decoded, DecodedAudio, DecodedPcm16,
};
pub use probe::{
    open_audio_file, probe_bytes, probe_file, AudioInfo, Codec, Container, ProbeError,
};
pub use signal::SignalStats;
