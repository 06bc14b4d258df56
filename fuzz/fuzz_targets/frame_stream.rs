#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketmq_core::fuzzing::frame_stream(data));
