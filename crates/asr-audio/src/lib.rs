//! Audio header probe, decoding (symphonia), downmix and resampling to 16 kHz (rubato).

pub mod resample;
