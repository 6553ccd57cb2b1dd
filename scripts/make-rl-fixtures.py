"""Makes the healthy GRPO and DPO logs of the reward, KL and eval alert tests with TRL on the CPU.

A 2-layer GPT-2 with random weights and a 20-word vocabulary, saved with its word-level
tokenizer to a local directory (TRL loads the reference model from there), no download.

grpo: tests/fixtures/trl/grpo.log, GRPOTrainer, 60 steps, logging_steps=1, beta=0.04 (so `kl`
is logged), 4 completions of 8 words per prompt; the toy reward is the fraction of the word
`w1` in the completion, so the per-batch mean is noisy by nature.

dpo: tests/fixtures/trl/dpo.log, DPOTrainer, 60 steps, logging_steps=1, eval every 10 steps:
chosen completions count up from the prompt's last word, rejected ones are random words.

    python3 -m venv /tmp/rlvenv && /tmp/rlvenv/bin/pip install torch transformers trl datasets
    /tmp/rlvenv/bin/python scripts/make-rl-fixtures.py grpo > tests/fixtures/trl/grpo.log 2>&1
    /tmp/rlvenv/bin/python scripts/make-rl-fixtures.py dpo > tests/fixtures/trl/dpo.log 2>&1
"""

import random
import sys

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

WORDS = [f"w{i}" for i in range(20)]
MODEL = "/tmp/rl-model"


def build():
    vocab = {"<pad>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<eos>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(MODEL)
    fast.save_pretrained(MODEL)
    return fast


def prompts(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(n)]


def grpo(tok):
    from trl import GRPOConfig, GRPOTrainer

    def share_of_w1(completions, **kwargs):
        return [c.split().count("w1") / max(1, len(c.split())) for c in completions]

    args = GRPOConfig(
        output_dir="/tmp/grpo-out",
        max_steps=60,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-3,
        beta=0.04,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    ds = Dataset.from_dict({"prompt": prompts(512, 1)})
    GRPOTrainer(
        model=MODEL,
        reward_funcs=share_of_w1,
        args=args,
        train_dataset=ds,
        processing_class=tok,
    ).train()


def dpo(tok):
    from trl import DPOConfig, DPOTrainer

    def rows(n, seed):
        rng = random.Random(seed)
        out = {"prompt": [], "chosen": [], "rejected": []}
        for _ in range(n):
            start = rng.randrange(len(WORDS))
            out["prompt"].append(" ".join(WORDS[(start + i) % 20] for i in range(4)))
            out["chosen"].append(" ".join(WORDS[(start + 4 + i) % 20] for i in range(4)))
            out["rejected"].append(" ".join(rng.choice(WORDS) for _ in range(4)))
        return Dataset.from_dict(out)

    args = DPOConfig(
        output_dir="/tmp/dpo-out",
        max_steps=60,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=5e-4,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    DPOTrainer(
        model=MODEL,
        args=args,
        train_dataset=rows(512, 1),
        eval_dataset=rows(32, 2),
        processing_class=tok,
    ).train()


def main():
    tok = build()
    {"grpo": grpo, "dpo": dpo}[sys.argv[1]](tok)


if __name__ == "__main__":
    main()
