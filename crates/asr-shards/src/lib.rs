//! Sharded Arrow IPC files of 16 kHz audio and CTC labels: schema, atomic writer, reader, manifest.
