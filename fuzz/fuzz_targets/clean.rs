//! cargo fuzz target: [`gpu_train_exporter_fuzz::clean`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gpu_train_exporter_fuzz::clean(data));
