#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketmq_core::fuzzing::consumer_id_list(data));
