"""PyTorch side of the course: the official ``sa_layer`` twin, CIFAR and ImageNet
SA-ResNets, the attention modules they compare against, and a model summary."""
from .attention import ECABlock, SEBlock, make_attention
from .layer import SALayer, channel_shuffle
from .models import ATTENTION_NAMES, MODEL_NAMES, build_model, cifar_resnet, sa_resnet50, sa_resnet101, sa_resnet152
from .summary import compare_models, summarize

__all__ = [
    "SALayer", "channel_shuffle", "SEBlock", "ECABlock", "make_attention",
    "cifar_resnet", "build_model", "sa_resnet50", "sa_resnet101", "sa_resnet152",
    "MODEL_NAMES", "ATTENTION_NAMES", "summarize", "compare_models",
]
