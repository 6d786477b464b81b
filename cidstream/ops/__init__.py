"""Pure tensor functions (any device, batch first) shared by the stages."""
from .color import ColorSpec, rgb_to_yuv420, yuv420_to_rgb

__all__ = ["ColorSpec", "rgb_to_yuv420", "yuv420_to_rgb"]
