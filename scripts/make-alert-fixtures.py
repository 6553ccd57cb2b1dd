"""Makes the trainer logs of the alert tests with a real Hugging Face Trainer on the CPU.

noisy: tests/fixtures/transformers/train-noisy.log, a healthy run whose logged loss is noisy
(batches of 2, half learnable sequences, half random tokens, logged every 2 steps): the
divergence alert must stay silent on it.

nan-filtered: tests/fixtures/transformers/train-nan-filtered.log, the same model pushed to
diverge (SGD warming up to a huge learning rate, no clipping) with the default
logging_nan_inf_filter=True: the printed loss stays finite while grad_norm reads nan.

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers accelerate
    /tmp/hf/bin/python scripts/make-alert-fixtures.py noisy > tests/fixtures/transformers/train-noisy.log 2>&1
    /tmp/hf/bin/python scripts/make-alert-fixtures.py nan-filtered > tests/fixtures/transformers/train-nan-filtered.log 2>&1
"""

import random
import sys

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

SEQ = 32
VOCAB = 128


class Mixed(Dataset):
    """Half the sequences count up from a random start (learnable), half are random tokens."""

    def __init__(self, n, seed):
        rng = random.Random(seed)
        self.items = []
        for _ in range(n):
            if rng.random() < 0.5:
                start = rng.randrange(VOCAB)
                ids = [(start + i) % VOCAB for i in range(SEQ)]
            else:
                ids = [rng.randrange(VOCAB) for _ in range(SEQ)]
            self.items.append(torch.tensor(ids))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": self.items[i], "labels": self.items[i]}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "noisy"
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=SEQ, n_embd=64, n_layer=2, n_head=2
    )
    model = GPT2LMHeadModel(config)
    if mode == "nan-filtered":
        args = TrainingArguments(
            output_dir="/tmp/nan-out",
            max_steps=120,
            per_device_train_batch_size=8,
            optim="sgd",
            learning_rate=200.0,
            warmup_steps=60,
            max_grad_norm=0.0,
            logging_steps=5,
            logging_nan_inf_filter=True,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=Mixed(2000, 1))
        trainer.train()
        return
    args = TrainingArguments(
        output_dir="/tmp/noisy-out",
        max_steps=400,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        warmup_steps=20,
        lr_scheduler_type="cosine",
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=100,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Mixed(2000, 1),
        eval_dataset=Mixed(64, 2),
    )
    trainer.train()


if __name__ == "__main__":
    main()
