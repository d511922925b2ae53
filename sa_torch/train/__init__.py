"""Training a CIFAR ResNet, with or without attention: ``python -m sa_torch.train --help``.

One room per piece of a run, in the order a run meets them:

- :mod:`~sa_torch.train.config`: :class:`TrainConfig`, every setting of a run, and the flags
  made from its fields;
- :mod:`~sa_torch.train.device` and :mod:`~sa_torch.train.layout`: the device, the precision it
  trains in, denormals on a CPU, and the memory layout measured to be faster for the model;
- :mod:`~sa_torch.train.data`: CIFAR-10 from an ImageFolder copy or torchvision's archive,
  decoded once and cached, and augmented on the device;
- :mod:`~sa_torch.train.recipe`: the optimizer, the learning-rate schedule and each epoch's
  order;
- :mod:`~sa_torch.train.loop`: :func:`train`, the training loop;
- :mod:`~sa_torch.train.checkpoint`: the checkpoint that resumes a run, ``--export``'s file
  and :func:`load_trained`, which reads it back;
- :mod:`~sa_torch.train.ddp`: ``torchrun --nproc_per_node=N -m sa_torch.train ...`` runs
  DistributedDataParallel;
- :mod:`~sa_torch.train.cli`: the command line; :mod:`~sa_torch.train.compare`: several
  variants and seeds, and a mean ± std table (``python -m sa_torch.train.compare``).

The model side (layers, models, official weights) lives one level up and never imports this
package.
"""
from .checkpoint import CHECKPOINT, RunState, export_weights, load_trained, save_atomic
from .cli import main, parser
from .config import ConfigError, TrainConfig, check_model
from .device import pick_device, sync
from .loop import TIMING_KEYS, Stopper, evaluate, train, train_step
from .recipe import epoch_order, make_optimizer, one_cycle

__all__ = ["CHECKPOINT", "TIMING_KEYS", "ConfigError", "RunState", "Stopper", "TrainConfig", "check_model",
           "epoch_order", "evaluate", "export_weights", "load_trained", "main", "make_optimizer", "one_cycle",
           "parser", "pick_device", "save_atomic", "sync", "train", "train_step"]
