//! Prints what the header probe and the full decoder say about each file given:
//! `cargo run -p asr-audio --example probe -- FILE...`

use std::path::Path;

fn main() {
    for arg in std::env::args().skip(1) {
        let path = Path::new(&arg);
        match asr_audio::probe_file(path) {
            Ok(info) => println!(
                "{arg}: probe {} {} Hz {} ch {:?} bits, {:?} s{}",
                info.codec,
                info.sample_rate_hz,
                info.channels,
                info.bits_per_sample,
                info.duration_s(),
                info.header_problem
                    .map(|p| format!(" PROBLEM: {p}"))
                    .unwrap_or_default()
            ),
            Err(e) => println!("{arg}: probe error: {e}"),
        }
        match asr_audio::decode_file(path) {
            Ok(audio) => {
                let stats = asr_audio::SignalStats::of(&audio);
                println!(
                    "{arg}: decode {} frames {} ch {} Hz = {:.4} s, peak {:.1} dBFS, rms {:.1} dBFS, clipped {:.4}",
                    audio.num_frames(),
                    audio.channels,
                    audio.sample_rate_hz,
                    audio.duration_s(),
                    stats.peak_dbfs(),
                    stats.rms_dbfs(),
                    stats.clipped_fraction
                );
            }
            Err(e) => println!("{arg}: decode error: {e}"),
        }
    }
}
