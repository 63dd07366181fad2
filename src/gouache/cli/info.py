"""``gouache info IMAGE``: the generation parameters an image carries."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("info", help="print the generation parameters stored in an image")
    p.add_argument("image", help="a PNG written by gouache, AUTOMATIC1111 or compatible tools")
    p.add_argument("--json", action="store_true", help="print prompt, negative prompt and parameters as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json

    from gouache.errors import InvalidArgument
    from gouache.metadata.infotext import parse_infotext
    from gouache.metadata.png import read_infotext

    text = read_infotext(args.image)
    if not text:
        raise InvalidArgument(f"{args.image} carries no generation parameters")
    if args.json:
        parsed = parse_infotext(text)
        print(json.dumps({"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt,
                          "parameters": parsed.params}, indent=2, ensure_ascii=False))
    else:
        print(text)
    return 0
