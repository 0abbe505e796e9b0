#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth_llm::fuzzing::shard_with_manifest(data));
