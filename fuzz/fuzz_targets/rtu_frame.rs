//! The simulator's RTU frame parser, fed arbitrary bytes as a client on a
//! serial line or an RTU-over-TCP socket could send them. It must never
//! panic, and a frame it accepts must lie within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(len) = fieldgate::sim::fuzzing::rtu_request(data) {
        assert!(len >= 4 && len <= data.len(), "frame of {len} bytes in {} bytes", data.len());
    }
});
