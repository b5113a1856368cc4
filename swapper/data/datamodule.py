"""A LightningDataModule around ready-made datasets (built by Hydra from ``conf/data``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class StepIndexedSampler(Sampler[int]):
    """A shuffled order that is a function of (seed, training step), so a resumed run reads on exactly
    where the interrupted one stopped, even mid-epoch.

    Epoch ``e``'s order is a permutation drawn from ``(seed, e)`` alone (no global random stream is
    touched). At each new iterator the sampler asks ``steps_done()`` how many batches of
    ``batch_size`` × ``world_size`` items have been trained on and starts after them; whole epochs
    of ``len(self) // (batch_size · world_size)`` batches (the last partial batch is dropped).
    """

    def __init__(
        self,
        length: int,
        seed: int,
        batch_size: int,
        steps_done: Callable[[], int] = lambda: 0,
        world_size: Callable[[], int] = lambda: 1,
    ) -> None:
        if length < 1:
            raise ValueError("the training set is empty")
        self.length, self.seed, self.batch_size = length, int(seed), batch_size
        self.steps_done, self.world_size = steps_done, world_size

    def __len__(self) -> int:
        return self.length

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=generator)

    def __iter__(self) -> Iterator[int]:
        per_step = self.batch_size * self.world_size()
        batches = self.length // per_step
        if batches == 0:
            raise ValueError(
                f"{self.length} training items make no batch of {self.batch_size} × "
                f"{self.world_size()} processes"
            )
        epoch, offset = divmod(self.steps_done(), batches)
        yield from self.order(epoch)[offset * per_step : batches * per_step].tolist()


class FaceDataModule(L.LightningDataModule):
    """Wraps a training and an optional validation dataset; Lightning adds samplers under DDP."""

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None = None,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        crop_template: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.train_dataset = train
        self.val_dataset = val
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        # How the faces were cut (an alignment template of swapper.faces.alignment, or "synthetic" for
        # rendered crops); inference cuts new faces the same way. None: what extraction recorded in the
        # folders' faces.jsonl.
        self.crop_template = crop_template
        self.seed = seed

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=sampler is not None,
        )

    def _steps_done(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.world_size) if trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        sampler = StepIndexedSampler(
            len(self.train_dataset), self.seed, self.batch_size, self._steps_done, self._world_size
        )
        return self._loader(self.train_dataset, self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self.val_batch_size)
