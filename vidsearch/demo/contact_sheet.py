"""A contact sheet: one row per query, the middle frame of each of its top hits, labelled (PNG)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from vidsearch.video import Clip, SamplingRule, read_frames

THUMB = 128
CAPTION_H = 30
TITLE_H = 22
MARGIN = 6


@dataclass(frozen=True)
class Tile:
    path: Path
    start_s: float
    end_s: float
    label: str  # drawn under the frame
    good: bool | None = None  # a green (True) or red (False) frame around it; None: none


def middle_frame(path: Path, start_s: float, end_s: float) -> NDArray[np.uint8]:
    """The frame shown at the middle of [start_s, end_s) of a video (RGB)."""
    item = next(iter(read_frames(path, [Clip(0, start_s, end_s)], SamplingRule(frames=1))))
    return item.frames[0]


def write_sheet(rows: Sequence[tuple[str, Sequence[Tile]]], out: Path) -> Path:
    """Draw the rows (title, tiles) and save the sheet as PNG."""
    columns = max((len(tiles) for _, tiles in rows), default=1)
    cell_w, cell_h = THUMB + MARGIN, THUMB + CAPTION_H
    sheet = Image.new("RGB", (MARGIN + columns * cell_w, len(rows) * (TITLE_H + cell_h) + MARGIN), "white")
    draw = ImageDraw.Draw(sheet)
    top = MARGIN
    for title, tiles in rows:
        draw.text((MARGIN, top + 4), title, fill="black")
        top += TITLE_H
        for column, tile in enumerate(tiles):
            left = MARGIN + column * cell_w
            image = Image.fromarray(middle_frame(tile.path, tile.start_s, tile.end_s)).resize((THUMB, THUMB))
            sheet.paste(image, (left, top))
            if tile.good is not None:
                colour = "green" if tile.good else "red"
                box = (left - 2, top - 2, left + THUMB + 1, top + THUMB + 1)
                draw.rectangle(box, outline=colour, width=3)
            for line, text in enumerate(tile.label.splitlines()[:2]):
                draw.text((left, top + THUMB + 3 + 12 * line), text, fill="black")
        top += cell_h
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
