"""Makes tests/fixtures/transformers/train-noisy.log: a healthy Hugging Face Trainer run whose
logged loss is noisy (batches of 2, half learnable sequences, half random tokens, logged every
2 steps), for the alert tests that must stay silent on ordinary noise.

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers accelerate
    /tmp/hf/bin/python scripts/make-noisy-fixture.py > tests/fixtures/transformers/train-noisy.log 2>&1
"""

import random

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
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=SEQ, n_embd=64, n_layer=2, n_head=2
    )
    model = GPT2LMHeadModel(config)
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
