"""PNG infotext: write and read AUTOMATIC1111's generation parameters in image files."""

from gouache.metadata.infotext import (
    A1111_KEY_ORDER,
    ParsedInfotext,
    format_infotext,
    ordered,
    parse_infotext,
)
from gouache.metadata.png import next_image_path, read_infotext, save_png

__all__ = [
    "A1111_KEY_ORDER",
    "ParsedInfotext",
    "format_infotext",
    "next_image_path",
    "ordered",
    "parse_infotext",
    "read_infotext",
    "save_png",
]
