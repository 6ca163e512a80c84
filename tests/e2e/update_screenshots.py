"""Copy the browser tests' screenshots into docs/screenshots/ for the README, each under 300 KB.

Run after `pytest tests/e2e`: `python tests/e2e/update_screenshots.py`. Screenshots are reduced
to a 256-colour palette (the UI is flat colours, so this is near-lossless) and, if still too
big, scaled down until they fit.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SOURCE, TARGET = ROOT / "tests" / "artifacts", ROOT / "docs" / "screenshots"
LIMIT = 300 * 1024
NAMES = {"1_data_import": "data-import", "2_data_build": "data-build", "2b_data_curate": "data-curate",
         "3_themes": "themes-ipf",
         "4_train": "train", "5_chat": "chat", "6_export": "export", "7_chat_side_by_side": "chat-side-by-side",
         "8_chat_voice": "chat-voice"}


def compress(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    while True:
        buf = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True)
        if buf.tell() < LIMIT:
            return buf.getvalue()
        image = image.resize((int(image.width * 0.9), int(image.height * 0.9)), Image.Resampling.LANCZOS)


def main() -> int:
    TARGET.mkdir(parents=True, exist_ok=True)
    missing = [name for name in NAMES if not (SOURCE / f"{name}.png").is_file()]
    if missing:
        print(f"missing screenshots (run pytest tests/e2e first): {', '.join(missing)}", file=sys.stderr)
        return 2
    for name, target in NAMES.items():
        data = compress(SOURCE / f"{name}.png")
        (TARGET / f"{target}.png").write_bytes(data)
        print(f"{target}.png  {len(data) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
