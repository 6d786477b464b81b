"""Pure tensor functions (any device, batch first) shared by the stages: colour conversion, padding, the DCP filters."""
from .color import ColorSpec, rgb_to_yuv420, yuv420_to_rgb

__all__ = ["ColorSpec", "rgb_to_yuv420", "yuv420_to_rgb"]
