"""The vision bars on gouache-tiny's own generations (issue #20), with the built-in models.

1. **Captions of generations**: 64 seen-pair and 64 held-out-pair prompts, one image each (seed =
   index + 1, the model's defaults); the built-in captioner's caption must equal the prompt
   (bar: 90 % seen, 80 % held-out). Images the judge reads wrong are counted apart: a caption can
   only be as right as the picture. Also: captions equal to what the judge reads in each image
   (colour, shape, background and style), over all of them.
2. **Round trip**: ``gouache interrogate``'s prompt for each generated image, then a new image from
   that prompt (another seed); the judge must read the same colour, shape and background as in the
   first image (bar: 85 %).

    python scripts/quality/vision_round_trip.py [--n 64] [--captioner FOLDER] [--no-round-trip] [--rerank]
"""

import argparse

import gouache
from gouache.pipelines.model import load_model
from gouache.tiny.judge import evaluation_prompts, read_image
from gouache.vision.captioners import load_captioner
from gouache.vision.clip import load_clip
from gouache.vision.interrogate import interrogate


def reading(image) -> tuple[str, str, str]:
    r = read_image(image)
    return r.colour, r.shape, r.background


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="images per set (default 64)")
    parser.add_argument("--captioner", default=None, help="a captioner folder to measure (default: the built-in)")
    parser.add_argument("--no-round-trip", action="store_true", help="measure the captions only")
    parser.add_argument("--rerank", action="store_true", help="captions (and interrogate's) picked by the built-in CLIP from the "
                        "captioner's beam candidates (gouache caption --rerank gouache-tiny-clip)")
    args = parser.parse_args()
    model = load_model()
    with load_captioner(args.captioner) as captioner, load_clip() as clip:
        for held_out in (False, True):
            prompts = evaluation_prompts(held_out, args.n)
            images = [gouache.txt2img(p, model=model, seed=i + 1)[0].image for i, p in enumerate(prompts)]
            captions = captioner.caption(images, rerank=clip if args.rerank else None)
            exact = sum(c == p for c, p in zip(captions, prompts))
            drawn_right = [i for i, (im, p) in enumerate(zip(images, prompts)) if _judged(im, p)]
            exact_drawn = sum(captions[i] == prompts[i] for i in drawn_right)
            # what each image shows, as the judge reads it, written as a caption (style included)
            shown = sum(c == _caption_of(im) for c, im in zip(captions, images))
            same = 0
            for i, image in enumerate([] if args.no_round_trip else images):
                prompt = interrogate(image, clip, captioner, rerank=args.rerank).prompt
                again = gouache.txt2img(prompt, model=model, seed=1000 + i)[0].image
                same += reading(again) == reading(image)
            name = "held-out" if held_out else "seen"
            print(f"{name}: captions exact {exact}/{len(prompts)} ({100 * exact / len(prompts):.1f} %); "
                  f"on the {len(drawn_right)} images the judge reads right: {exact_drawn}/{len(drawn_right)}; "
                  f"the caption of what the judge reads in each image: {shown}/{len(images)} "
                  f"({100 * shown / len(images):.1f} %); "
                  f"round trip same colour, shape, background: {same}/{len(images)} ({100 * same / len(images):.1f} %)")


def _caption_of(image) -> str:
    r = read_image(image)
    return f"a {r.colour} {r.shape} on a {r.background} background" + (", outline style" if r.style == "outline" else "")


def _judged(image, prompt: str) -> bool:
    from gouache.tiny.judge import parse_prompt

    return reading(image) == parse_prompt(prompt)


if __name__ == "__main__":
    main()
