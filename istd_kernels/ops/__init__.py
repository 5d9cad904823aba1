"""The ops: public functions with a plain-PyTorch reference (``*_ref``) and fast backends."""

from .components import ComponentStats, component_stats, connected_components, connected_components_ref
from .depthwise import depthwise_conv2d, depthwise_conv2d_ref

__all__ = [
    "ComponentStats",
    "component_stats",
    "connected_components",
    "connected_components_ref",
    "depthwise_conv2d",
    "depthwise_conv2d_ref",
]
