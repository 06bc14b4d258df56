#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketmq_core::fuzzing::consume_directly_result(data));
