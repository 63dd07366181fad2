"""Styles and dynamic prompts, around every generation mode.

A request's prompt is a template: its ``styles`` (:mod:`gouache.prompts.styles`) are applied first,
then its ``{a|b}`` variants and ``__wildcards__`` (:mod:`gouache.prompts.dynamic`) are resolved
per image, image ``k`` from its own seed ``seed + k`` (the seed its noise comes from), so one seed
always gives one prompt. Styles first, as A1111 applies them before Dynamic Prompts sees the prompt:
a style may hold wildcards too. ``literal_prompts`` takes the text as written (styles still apply).

:func:`with_prompt_tools` wraps a pipeline (``txt2img``, ``img2img``, ``inpaint``, ``depth2img``,
``upscale``): when the images' prompts differ it runs the pipeline once per image (batch size 1,
seed ``seed + k``, which gives the image that image ``k`` of the batch would be), else once. Each
image's request holds the prompt it was made with (``literal_prompts`` set, no styles left to
apply), and its infotext adds Dynamic Prompts' ``Template`` / ``Negative Template`` keys when a
prompt was resolved. A1111 records styles by writing the styled prompt (its reader finds the
styles in it again: :func:`gouache.prompts.styles.extract_styles`); so does gouache.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import replace

from gouache.errors import InvalidArgument, check_int
from gouache.metadata.infotext import format_infotext, ordered
from gouache.pipelines.request import MAX_SEED, GeneratedImage, GenerationRequest
from gouache.prompts.dynamic import WildcardLibrary, check, is_dynamic, resolve
from gouache.prompts.styles import apply_styles, find_styles

# Dynamic Prompts' infotext labels (sd_dynamic_prompts/pnginfo_saver.py)
TEMPLATE_KEY = "Template"
NEGATIVE_TEMPLATE_KEY = "Negative Template"


def styled(req: GenerationRequest) -> tuple[str, str]:
    """The prompt and negative prompt with the request's styles applied (unknown names raise)."""
    if not req.styles:
        return req.prompt, req.negative_prompt
    return apply_styles(req.prompt, req.negative_prompt, find_styles(req.styles))


def check_prompt_tools(req: GenerationRequest) -> None:
    """Raise :class:`InvalidArgument` unless every style exists and, unless ``literal_prompts``,
    both prompts resolve whatever the seed (balanced braces, wildcards that exist, no cycle)."""
    styles = req.styles
    if isinstance(styles, str) or not isinstance(styles, (list, tuple)) or not all(isinstance(s, str) for s in styles):
        raise InvalidArgument(f"`styles` must be a list of style names, e.g. [\"Oil painting\"], got {styles!r:.100}")
    if not isinstance(req.literal_prompts, bool):
        raise InvalidArgument(f"`literal_prompts` must be True or False, got {req.literal_prompts!r:.100}")
    prompt, negative = styled(req)
    if not req.literal_prompts:
        library = WildcardLibrary()
        check(prompt, library, "the prompt")
        check(negative, library, "the negative prompt")


def prompt_requests(request: GenerationRequest) -> list[GenerationRequest] | None:
    """The requests that make ``request``'s images with their prompts resolved, in order: one (its
    whole batch) when every image gets the same prompt, else one per image; None when there is
    nothing to apply (no styles, nothing dynamic)."""
    plain = request.literal_prompts or not (is_dynamic(request.prompt) or is_dynamic(request.negative_prompt))
    if not request.styles and plain:
        return None
    check_prompt_tools(request)
    prompt, negative = styled(request)
    done = replace(request, styles=(), literal_prompts=True)
    if request.literal_prompts or not (is_dynamic(prompt) or is_dynamic(negative)):
        return [replace(done, prompt=prompt, negative_prompt=negative)]
    for name, value in (("seed", done.seed), ("subseed", done.subseed)):
        check_int(name, value, -1, MAX_SEED)
    count = check_int("batch_size", done.batch_size, 1, 64) * check_int("n_iter", done.n_iter, 1, 10_000)
    done = done.with_seed()
    library = WildcardLibrary()
    prompts = [(resolve(prompt, done.seed + k, library), resolve(negative, done.seed + k, library, "negative_prompt"))
               for k in range(count)]
    if len(set(prompts)) == 1:
        return [replace(done, prompt=prompts[0][0], negative_prompt=prompts[0][1])]
    return [replace(done.seeds_of(done.seed + k), prompt=p, negative_prompt=n) for k, (p, n) in enumerate(prompts)]


def template_params(request: GenerationRequest) -> dict[str, str]:
    """The infotext keys that record ``request``'s templates (Dynamic Prompts' ``Template`` and
    ``Negative Template``), for the prompts that were resolved."""
    if request.literal_prompts:
        return {}
    prompt, negative = styled(request)
    return {key: text for key, text, full in ((TEMPLATE_KEY, request.prompt, prompt),
                                              (NEGATIVE_TEMPLATE_KEY, request.negative_prompt, negative))
            if is_dynamic(full)}


def with_templates(result: GeneratedImage, params: dict[str, str]) -> GeneratedImage:
    """``result`` with ``params`` added to its infotext."""
    if not params:
        return result
    from gouache.pipelines.fields import FIELDS

    closing = {f.key for f in FIELDS if f.run}  # how the model ran still closes the line
    head = {k: v for k, v in result.params.items() if k not in closing}
    merged = ordered({**head, **params, **{k: v for k, v in result.params.items() if k in closing}})
    text = format_infotext(result.request.prompt, result.request.negative_prompt, merged)
    return replace(result, infotext=text, params=merged)


def with_prompt_tools(pipeline):
    """``pipeline(model, request, ..., progress=None, ...)`` applying the request's styles and
    resolving its dynamic prompts first (see the module docstring); one progress bar over all runs.

    >>> @with_prompt_tools
    ... def echo(model, request, progress=None):
    ...     return [request.prompt]
    >>> echo(None, GenerationRequest("a {red|red} circle", seed=1))
    ['a red circle']
    """
    signature = inspect.signature(pipeline)

    @functools.wraps(pipeline)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        request = bound.arguments["request"]
        requests = prompt_requests(request) if isinstance(request, GenerationRequest) else None
        if requests is None:
            return pipeline(*args, **kwargs)
        progress = bound.arguments.get("progress")
        params = template_params(request)
        out = []
        for k, one in enumerate(requests):
            bound.arguments["request"] = one
            if progress is not None and len(requests) > 1:
                bound.arguments["progress"] = functools.partial(_overall, progress, k, len(requests))
            out.extend(with_templates(r, params) if isinstance(r, GeneratedImage) else r
                       for r in pipeline(*bound.args, **bound.kwargs))
        return out

    return run


def _overall(progress, k: int, count: int, i: int, n: int) -> None:
    """Run ``k`` of ``count``'s step ``i`` of ``n`` as a step of all of them."""
    progress(k * n + i, count * n)
