//! cargo fuzz target: [`gpu_train_exporter_fuzz::tqdm`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gpu_train_exporter_fuzz::tqdm(data));
