//! Header probe and decoder on WAV files written here (every PCM width, float,
//! WAVE_FORMAT_EXTENSIBLE, truncation) and on the committed corpus fixtures (FLAC, MP3
//! with a LAME Info header, with an ID3v2 tag and a Lavc header, without any header, Ogg
//! Vorbis): the probe's numbers match what decoding yields, and broken files are errors
//! that say why. Random bytes never make the probe panic.

use std::path::{Path, PathBuf};

use asr_audio::{decode_file, probe_bytes, probe_file, Codec, Container, DecodeError, SignalStats};
use proptest::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A WAV file: `fmt ` (optionally WAVE_FORMAT_EXTENSIBLE) + a LIST chunk + `data`.
fn wav(
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data: &[u8],
    extensible: bool,
    declared: Option<u32>,
) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&(if extensible { 0xFFFEu16 } else { format }).to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&0u32.to_le_bytes());
        fmt.extend_from_slice(&format.to_le_bytes());
        fmt.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    }
    let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    // A LIST/INFO chunk before the data, with an odd-sized (padded) sub-chunk.
    out.extend_from_slice(b"LIST\x10\0\0\0INFOISFT\x03\0\0\0ab\0\0");
    out.extend_from_slice(b"data");
    out.extend_from_slice(&declared.unwrap_or(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    out
}

fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// 0.5, -0.5, 0.25, 0 as each PCM encoding.
fn samples(format: u16, bits: u16) -> Vec<u8> {
    let values = [0.5f64, -0.5, 0.25, 0.0];
    let mut out = Vec::new();
    for v in values {
        match (format, bits) {
            (1, 8) => out.push((128.0 + v * 128.0) as u8),
            (1, 16) => out.extend_from_slice(&((v * 32768.0) as i16).to_le_bytes()),
            (1, 24) => out.extend_from_slice(&((v * 8_388_608.0) as i32).to_le_bytes()[..3]),
            (1, 32) => out.extend_from_slice(&((v * 2_147_483_648.0) as i32).to_le_bytes()),
            (3, 32) => out.extend_from_slice(&(v as f32).to_le_bytes()),
            (3, 64) => out.extend_from_slice(&v.to_le_bytes()),
            _ => unreachable!(),
        }
    }
    out
}

#[test]
fn wav_every_pcm_width_and_float_probes_and_decodes() {
    for (format, bits, codec) in [
        (1, 8, Codec::PcmU8),
        (1, 16, Codec::PcmS16le),
        (1, 24, Codec::PcmS24le),
        (1, 32, Codec::PcmS32le),
        (3, 32, Codec::PcmF32le),
        (3, 64, Codec::PcmF64le),
    ] {
        for extensible in [false, true] {
            let data = samples(format, bits);
            let bytes = wav(format, 1, 22_050, bits, &data, extensible, None);
            let info = probe_bytes(&bytes).unwrap();
            assert_eq!(
                (info.container, info.codec),
                (Container::Wav, codec),
                "{bits} bits ext={extensible}"
            );
            assert_eq!(info.sample_rate_hz, 22_050);
            assert_eq!(info.channels, 1);
            assert_eq!(info.bits_per_sample, Some(bits));
            assert_eq!(info.num_frames, Some(4));
            assert_eq!(info.header_problem, None);
            let (_dir, path) = write_temp(&bytes, "a.wav");
            assert_eq!(probe_file(&path).unwrap(), info);
            let audio =
                decode_file(&path).unwrap_or_else(|e| panic!("{codec} ext={extensible}: {e}"));
            assert_eq!(audio.sample_rate_hz, 22_050);
            for (got, want) in audio.samples.iter().zip([0.5f32, -0.5, 0.25, 0.0]) {
                assert!((got - want).abs() < 1e-2, "{codec}: {:?}", audio.samples);
            }
        }
    }
}

#[test]
fn multichannel_extensible_wav_and_downmix() {
    // 3 channels, 2 frames: (0.5, 0.25, -0.75), (0, 0, 0).
    let mut data = Vec::new();
    for v in [0.5f32, 0.25, -0.75, 0.0, 0.0, 0.0] {
        data.extend_from_slice(&((v * 32768.0) as i16).to_le_bytes());
    }
    let bytes = wav(1, 3, 16_000, 16, &data, true, None);
    let info = probe_bytes(&bytes).unwrap();
    assert_eq!((info.channels, info.num_frames), (3, Some(2)));
    let (_dir, path) = write_temp(&bytes, "m.wav");
    let audio = decode_file(&path).unwrap();
    assert_eq!(audio.channels, 3);
    assert_eq!(audio.num_frames(), 2);
    let mono = audio.to_mono();
    assert!(mono[0].abs() < 1e-4 && mono[1] == 0.0, "{mono:?}");
}

#[test]
fn truncated_wav_is_seen_by_the_probe_and_the_decoder() {
    let data = samples(1, 16);
    let bytes = wav(1, 1, 16_000, 16, &data, false, Some(16_000));
    let info = probe_bytes(&bytes).unwrap();
    assert!(
        info.header_problem
            .as_deref()
            .unwrap()
            .contains("truncated"),
        "{info:?}"
    );
    assert_eq!(info.num_frames, Some(4));
    let (_dir, path) = write_temp(&bytes, "t.wav");
    // The decoder reads what is there; the 4 frames decode.
    match decode_file(&path) {
        Ok(a) => assert_eq!(a.num_frames(), 4),
        Err(DecodeError::Corrupt { message, .. }) => {
            assert!(message.contains("truncated"), "{message}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn empty_and_headerless_wavs() {
    let bytes = wav(1, 1, 16_000, 16, &[], false, None);
    assert_eq!(probe_bytes(&bytes).unwrap().num_frames, Some(0));
    assert!(probe_bytes(b"RIFF\x04\0\0\0WAVE").is_err());
    let no_data = &wav(1, 1, 16_000, 16, &[], false, None)[..12 + 8 + 16];
    let err = probe_bytes(no_data).unwrap_err().to_string();
    assert!(err.contains("no data chunk"), "{err}");
}

/// Fixture file, its codec, rate and channels: probe and decode agree on the length.
#[test]
fn fixture_formats_probe_like_they_decode() {
    for (file, codec, rate, channels) in [
        (
            "fixtures/librispeech/LibriSpeech/train-clean-100/1001/2001/1001-2001-0000.flac",
            Codec::Flac,
            16_000,
            1,
        ),
        (
            "fixtures/librispeech/LibriSpeech/train-clean-100/1002/2003/1002-2003-0007.flac",
            Codec::Flac,
            16_000,
            2,
        ),
        (
            "fixtures/commonvoice/clips/common_voice_en_1.mp3",
            Codec::Mp3,
            48_000,
            1,
        ),
        (
            "fixtures/commonvoice/clips/common_voice_en_16.mp3",
            Codec::Mp3,
            8_000,
            1,
        ),
        (
            "fixtures/commonvoice/clips/common_voice_en_17.mp3",
            Codec::Mp3,
            48_000,
            2,
        ),
        (
            "fixtures/csv/kaggle/cv-valid-train/cv-valid-train/sample-000000.mp3",
            Codec::Mp3,
            48_000,
            1,
        ),
        ("fixtures/jsonl/audio/clip_03.ogg", Codec::Vorbis, 16_000, 1),
        (
            "fixtures/jsonl/audio/clip_02.wav",
            Codec::PcmF32le,
            16_000,
            1,
        ),
    ] {
        let path = repo().join(file);
        let info = probe_file(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            (info.codec, info.sample_rate_hz, info.channels),
            (codec, rate, channels),
            "{file}"
        );
        let audio = decode_file(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            (audio.sample_rate_hz, audio.channels),
            (rate, channels),
            "{file}"
        );
        let header_s = info.duration_s().unwrap();
        let tolerance = if codec == Codec::Mp3 { 0.06 } else { 1e-9 };
        assert!(
            (header_s - audio.duration_s()).abs() <= tolerance,
            "{file}: header {header_s} s, decoded {} s",
            audio.duration_s()
        );
        let stats = SignalStats::of(&audio);
        assert!(
            stats.rms_dbfs() > -40.0 && stats.peak < 1.0,
            "{file}: {stats:?}"
        );
    }
}

#[test]
fn broken_fixtures_fail_to_decode_with_a_reason() {
    let garbage =
        repo().join("fixtures/librispeech/LibriSpeech/test-clean/1004/2005/1004-2005-0003.flac");
    let info = probe_file(&garbage).unwrap();
    assert!(info.num_frames.unwrap() > 16_000);
    assert!(matches!(
        decode_file(&garbage),
        Err(DecodeError::Corrupt { .. })
    ));
    let cut = repo().join("fixtures/commonvoice/clips/common_voice_en_15.mp3");
    let err = decode_file(&cut).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let empty =
        repo().join("fixtures/librispeech/LibriSpeech/dev-clean/1003/2004/1003-2004-0004.flac");
    assert!(matches!(
        probe_file(&empty),
        Err(asr_audio::ProbeError::TooShort { len: 0 })
    ));
    let random =
        repo().join("fixtures/librispeech/LibriSpeech/dev-clean/1003/2004/1003-2004-0003.flac");
    assert!(matches!(
        probe_file(&random),
        Err(asr_audio::ProbeError::UnknownFormat { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn probe_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = probe_bytes(&bytes);
    }

    #[test]
    fn probe_never_panics_on_corrupted_headers(
        which in 0usize..4,
        flips in proptest::collection::vec((0usize..512, any::<u8>()), 1..8),
        cut in 0usize..4096,
    ) {
        let file = [
            "fixtures/librispeech/LibriSpeech/train-clean-100/1001/2001/1001-2001-0000.flac",
            "fixtures/commonvoice/clips/common_voice_en_1.mp3",
            "fixtures/csv/kaggle/cv-valid-train/cv-valid-train/sample-000000.mp3",
            "fixtures/jsonl/audio/clip_03.ogg",
        ][which];
        let mut bytes = std::fs::read(repo().join(file)).unwrap();
        for (pos, value) in flips {
            if pos < bytes.len() {
                bytes[pos] = value;
            }
        }
        bytes.truncate(cut.max(1));
        let _ = probe_bytes(&bytes);
        let wav_bytes = wav(1, 2, 16_000, 16, &[0; 64], false, None);
        let mut w = wav_bytes.clone();
        let i = cut % w.len();
        w[i] ^= 0xFF;
        let _ = probe_bytes(&w);
    }
}

/// The int16 path pack takes for 16-bit FLAC and WAV gives the very samples of the f32
/// path (each `x * 32768` is an integer there), and is refused for sources it would
/// change (MP3, Ogg Vorbis).
#[test]
fn int16_decoding_matches_float_decoding_exactly_where_offered() {
    let files = [
        "fixtures/librispeech/LibriSpeech/test-clean/1004/2005/1004-2005-0000.flac",
        "fixtures/jsonl/audio/clip_00.wav",
    ];
    for file in files {
        let path = repo().join(file);
        let bytes = std::fs::read(&path).unwrap();
        let info = probe_bytes(&bytes).unwrap();
        assert!(asr_audio::decodes_exactly_to_i16(&info), "{file}");
        let float = decode_file(&path).unwrap();
        let mut pcm = asr_audio::DecodedPcm16::default();
        asr_audio::decode_bytes_i16_into(&bytes, &info, &mut pcm).unwrap();
        assert_eq!(
            (pcm.channels, pcm.sample_rate_hz),
            (float.channels, float.sample_rate_hz)
        );
        assert_eq!(pcm.samples.len(), float.samples.len(), "{file}");
        assert!(!pcm.samples.is_empty());
        for (i, (&s, &x)) in pcm.samples.iter().zip(&float.samples).enumerate() {
            assert_eq!(f32::from(s), x * 32_768.0, "{file}: sample {i}");
        }
    }
    let mp3s: Vec<_> = std::fs::read_dir(repo().join("fixtures/commonvoice/clips"))
        .unwrap()
        .filter_map(|entry| probe_file(&entry.unwrap().path()).ok())
        .filter(|info| info.codec == Codec::Mp3)
        .collect();
    assert!(!mp3s.is_empty());
    assert!(mp3s
        .iter()
        .all(|info| !asr_audio::decodes_exactly_to_i16(info)));
}

/// A WAV as `ffmpeg -i x -f wav -` writes it to a pipe: the RIFF and `data` sizes are
/// 0xFFFFFFFF (or 0, from other streaming writers) because the writer could not seek back
/// to fill them in. The probe takes the data to run to the end of the file, and the
/// decoder returns every sample, the last partial packet included, from a file and from
/// memory, to f32 and to int16.
#[test]
fn streamed_wav_with_unknown_sizes_decodes_to_its_last_sample() {
    // 2.5 s at 16 kHz: not a whole number of the WAV reader's packets.
    let frames = 40_001usize;
    let pcm: Vec<i16> = (0..frames)
        .map(|i| ((i * 37) % 20_000) as i16 - 10_000)
        .collect();
    let data: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    for (riff_size, data_size) in [(0xFFFF_FFFFu32, 0xFFFF_FFFFu32), (0, 0), (36, 0)] {
        let mut bytes = wav(1, 1, 16_000, 16, &data, false, Some(data_size));
        bytes[4..8].copy_from_slice(&riff_size.to_le_bytes());
        let what = format!("RIFF size {riff_size:#x}, data size {data_size:#x}");
        let info = probe_bytes(&bytes).unwrap();
        assert_eq!(info.num_frames, Some(frames as u64), "{what}");
        assert_eq!(info.header_problem, None, "{what}");
        let (_dir, path) = write_temp(&bytes, "piped.wav");
        assert_eq!(probe_file(&path).unwrap().num_frames, Some(frames as u64));
        let decoded = decode_file(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(decoded.num_frames(), frames, "{what}");
        let want: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        assert_eq!(decoded.samples, want, "{what}");
        let mut int16 = asr_audio::DecodedPcm16::default();
        asr_audio::decode_bytes_i16_into(&bytes, &info, &mut int16).unwrap();
        assert_eq!(int16.samples, pcm, "{what}");
        let mut float = asr_audio::DecodedAudio::default();
        asr_audio::decode_bytes_into(&bytes, &info, &mut float).unwrap();
        assert_eq!(float.samples, want, "{what}");
    }
}

/// A path that names a FIFO (or a folder) is refused at once, naming it: opening a FIFO
/// for reading would wait forever for a writer.
#[cfg(unix)]
#[test]
fn a_fifo_or_a_folder_is_not_opened_for_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("clip.wav");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let probe = probe_file(&path).map(|_| ()).map_err(|e| e.to_string());
        let decode = decode_file(&path).map(|_| ()).map_err(|e| e.to_string());
        let _ = tx.send((probe, decode));
    });
    let (probe, decode) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("probing a FIFO blocked");
    for err in [probe.unwrap_err(), decode.unwrap_err()] {
        assert!(err.contains("FIFO"), "{err}");
        assert!(err.contains(&fifo.display().to_string()), "{err}");
    }
    let err = probe_file(dir.path()).unwrap_err();
    assert!(
        matches!(err, asr_audio::ProbeError::NotAFile { kind: "folder", .. }),
        "{err}"
    );
}
