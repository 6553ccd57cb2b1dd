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

resumed: tests/fixtures/transformers/train-resumed-real.log, a 60-step run saving a checkpoint
every 20 steps that SIGKILLs itself as step 47 begins (step 45's record printed), then the
same command again, which finds checkpoint-40 in its output directory and resumes from it to
the end; both attempts append to the same file (the shell's "Killed" goes to the terminal, not the log):

    rm -rf /tmp/resumed-out tests/fixtures/transformers/train-resumed-real.log
    /tmp/hf/bin/python scripts/make-alert-fixtures.py resumed >> tests/fixtures/transformers/train-resumed-real.log 2>&1
    /tmp/hf/bin/python scripts/make-alert-fixtures.py resumed >> tests/fixtures/transformers/train-resumed-real.log 2>&1
"""

import os
import random
import signal
import sys

import torch
from torch.utils.data import Dataset
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

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


class KillAt(TrainerCallback):
    """SIGKILLs this process as step `step` begins, as an OOM killer would.

    At the step's start rather than in `on_log`: the progress callback, which prints the
    records, runs after the user's callbacks, so a kill in `on_log` would lose the record."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


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
    if mode == "resumed":
        out = "/tmp/resumed-out"
        resume = os.path.isdir(os.path.join(out, "checkpoint-40"))
        args = TrainingArguments(
            output_dir=out,
            max_steps=60,
            per_device_train_batch_size=8,
            learning_rate=1e-3,
            logging_steps=5,
            save_steps=20,
            disable_tqdm=False,
            report_to=[],
            use_cpu=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Mixed(2000, 1),
            callbacks=[] if resume else [KillAt(47)],
        )
        trainer.train(resume_from_checkpoint=True if resume else None)
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
