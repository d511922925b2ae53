"""PyTorch side of the course: the official ``sa_layer`` twin, models and training."""
from .layer import SALayer, channel_shuffle

__all__ = ["SALayer", "channel_shuffle"]
