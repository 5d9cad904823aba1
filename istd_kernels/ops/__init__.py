"""The ops: public functions with a plain-PyTorch reference (``*_ref``) and fast backends."""

from . import _auto_rules, group_norm, mask_stats, residual  # noqa: F401  (auto's preferences; routed ops of the models and metrics)
from .components import (
                         ComponentStats,
                         component_stats,
                         connected_components,
                         connected_components_ref,
                         connected_components_with_stats,
                         measure_components,
)
from .depthwise import depthwise_conv2d, depthwise_conv2d_ref
from .hlk_conv import hlk_conv, hlk_conv_ref
from .multiscale_maxpool import multiscale_maxpool, multiscale_maxpool_ref
from .split_attention import split_attention, split_attention_ref

__all__ = [
    "ComponentStats",
    "component_stats",
    "connected_components",
    "connected_components_ref",
    "connected_components_with_stats",
    "depthwise_conv2d",
    "depthwise_conv2d_ref",
    "hlk_conv",
    "hlk_conv_ref",
    "measure_components",
    "multiscale_maxpool",
    "multiscale_maxpool_ref",
    "split_attention",
    "split_attention_ref",
]
