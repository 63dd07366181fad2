"""Dynamic prompts on gouache-tiny: N images of one 3-wildcard template, judged against the prompt each resolved to.

The wildcard files (a temporary $GOUACHE_HOME) hold colours and shapes whose every pair was seen in
training (none of gouache.tiny.shapes.HELD_OUT) and backgrounds unlike any shape colour. Printed: how
often the judge reads the resolved prompt's colour, shape and background; that every option came up;
that every image's infotext carries its resolved prompt and the template; that the same seeds pick
the same prompts again.

Run: OMP_NUM_THREADS=2 .venv/bin/python scripts/quality/wildcards_judge.py 100 20   (images, steps)
"""
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from gouache.tiny.shapes import HELD_OUT

TEMPLATE = "a __colour__ __shape__ on a __background__ background"
WILDCARDS = {"colour": ["red", "blue", "orange", "white"], "shape": ["circle", "square", "triangle"],
             "background": ["green", "yellow", "purple", "black"]}
assert not {(c, s) for c in WILDCARDS["colour"] for s in WILDCARDS["shape"]} & HELD_OUT  # every pair seen


def main(n: int, steps: int) -> float:
    home = Path(tempfile.mkdtemp())
    os.environ["GOUACHE_HOME"] = str(home)
    for name, options in WILDCARDS.items():
        (home / "wildcards").mkdir(exist_ok=True)
        (home / "wildcards" / f"{name}.txt").write_text("# written by wildcards_judge.py\n" + "\n".join(options) + "\n")
    from gouache.metadata.infotext import parse_infotext
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img
    from gouache.prompts.dynamic import resolve
    from gouache.tiny.judge import read_image

    model = load_model()
    images = txt2img(model, GenerationRequest(TEMPLATE, steps=steps, seed=1000, batch_size=1, n_iter=n))
    agree, seen = 0, Counter()
    for r in images:
        parsed = parse_infotext(r.infotext)
        assert parsed.prompt == r.request.prompt and parsed.params["Template"] == TEMPLATE
        assert resolve(TEMPLATE, r.seed) == r.request.prompt  # the image's own seed picked it
        colour, shape, background = re.fullmatch(r"a (\w+) (\w+) on a (\w+) background", r.request.prompt).groups()
        seen.update({("colour", colour), ("shape", shape), ("background", background)})
        reading = read_image(r.image)
        agree += (reading.colour, reading.shape, reading.background) == (colour, shape, background)
    again = [resolve(TEMPLATE, r.seed) for r in images]
    missing = [f"{k}={v}" for k, options in WILDCARDS.items() for v in options if (k, v) not in seen]
    print(f"{len(images)} images, {steps} steps: every infotext has its resolved prompt and the Template; "
          f"same seeds, same prompts: {again == [r.request.prompt for r in images]}; "
          f"options never picked: {', '.join(missing) or 'none'}")
    print(f"judge agrees with the resolved prompt: {agree}/{len(images)} = {100 * agree / len(images):.1f}%")
    return agree / len(images)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
