//! The well-known keys: the values with a metric family of their own. Each is declared once,
//! in the table below: its variant, the key formats normalise it to, its family and help
//! text, and whether its non-finite counter exists from the first value (the keys the NaN
//! alert watches). Everything else about a well-known key is derived from this table.

/// Declares [`Known`] and everything derived from the table.
macro_rules! known_keys {
    ($( $(#[$doc:meta])* $variant:ident => $key:literal, $family:literal, $help:literal, $watched:literal; )*) => {
        /// The values with a name of their own in the metric contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Known {
            $( $(#[$doc])* $variant, )*
        }

        /// Number of [`Known`] values.
        pub const KNOWN_COUNT: usize = [$( Known::$variant ),*].len();

        impl Known {
            /// Every well-known key, in the table's order (the exposition's).
            pub const ALL: [Known; KNOWN_COUNT] = [$( Known::$variant ),*];

            /// The key formats normalise the value to (`loss`, `learning_rate` ...).
            pub fn key(self) -> &'static str {
                match self { $( Known::$variant => $key, )* }
            }

            /// The metric family (`training_loss` ...).
            pub fn family(self) -> &'static str {
                match self { $( Known::$variant => $family, )* }
            }

            /// The family's help text.
            pub fn help(self) -> &'static str {
                match self { $( Known::$variant => $help, )* }
            }

            /// Keys whose non-finite counter exists from their first value (at 0): the ones
            /// the NaN alert watches.
            pub fn watched(self) -> bool {
                match self { $( Known::$variant => $watched, )* }
            }

            /// The well-known key a normalised key names.
            pub fn from_key(key: &str) -> Option<Known> {
                match key {
                    $( $key => Some(Known::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

known_keys! {
    Loss => "loss", "training_loss", "Latest training loss.", true;
    EvalLoss => "eval_loss", "training_eval_loss", "Latest evaluation loss.", true;
    LearningRate => "learning_rate", "training_learning_rate", "Latest learning rate.", false;
    GradNorm => "grad_norm", "training_grad_norm", "Latest gradient norm.", true;
    Epoch => "epoch", "training_epoch", "Latest epoch (fractional).", false;
    SamplesPerSecond => "samples_per_second", "training_samples_per_second",
        "Training throughput in samples per second.", false;
    StepsPerSecond => "steps_per_second", "training_steps_per_second",
        "Training throughput in optimizer steps per second.", false;
    TokensPerSecond => "tokens_per_second", "training_tokens_per_second",
        "Training throughput in tokens per second.", false;
    /// vLLM engine statistics (`inference_*` families).
    PromptTokensPerSecond => "prompt_tokens_per_second", "inference_prompt_tokens_per_second",
        "Inference engine prompt (prefill) throughput in tokens per second.", false;
    GenerationTokensPerSecond => "generation_tokens_per_second",
        "inference_generation_tokens_per_second",
        "Inference engine generation (decode) throughput in tokens per second.", false;
    RequestsRunning => "requests_running", "inference_requests_running",
        "Requests the inference engine is running.", false;
    RequestsWaiting => "requests_waiting", "inference_requests_waiting",
        "Requests waiting in the inference engine's queue.", false;
    KvCacheUsageRatio => "kv_cache_usage_ratio", "inference_kv_cache_usage_ratio",
        "Fraction of the GPU KV cache in use (0-1).", false;
    PrefixCacheHitRatio => "prefix_cache_hit_ratio", "inference_prefix_cache_hit_ratio",
        "Prefix cache hit rate (0-1).", false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_back_and_names_a_distinct_family() {
        let mut families = std::collections::BTreeSet::new();
        for k in Known::ALL {
            assert_eq!(Known::from_key(k.key()), Some(k));
            assert!(families.insert(k.family()), "{k:?}");
            assert!(k.family().ends_with(k.key()), "{k:?}: {}", k.family());
        }
        assert_eq!(Known::from_key("lr"), None);
        assert_eq!(KNOWN_COUNT, Known::ALL.len());
    }
}
