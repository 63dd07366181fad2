"""What the worker runs: the loaded checkpoint, generation jobs, and A1111's response for each.

One :class:`Generator` per server holds at most one loaded model (a request's
``override_settings.sd_model_checkpoint`` swaps it for that request, A1111's
``override_settings_restore_afterwards``), the server's /options, and turns a finished job into
A1111's ``{"images", "parameters", "info"}``. All its model work runs on the queue's worker thread.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
from pathlib import Path
from typing import Any, Callable

from gouache import __version__
from gouache.errors import GouacheError, InvalidArgument
from gouache.pipelines.request import GeneratedImage, GenerationRequest, Img2ImgRequest, InpaintRequest, UpscaleRequest
from gouache.server.catalog import find_checkpoint, load_path, title_of
from gouache.server.config import ServerConfig
from gouache.server.jobs import Interrupted, Tracker

logger = logging.getLogger(__name__)

# /options that gouache reads, with their checks; other keys are accepted and ignored (as A1111
# ignores keys it does not know)
SETTABLE = {
    "CLIP_stop_at_last_layers": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 12,
    "return_grid": lambda v: isinstance(v, bool),
    "show_progress_every_n_steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    # approximations for every request (gouache.speed): A1111's token merging, gouache's DeepCache and CFG truncation
    "token_merging_ratio": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 0.75,
    "deepcache_interval": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 20,
    # None: the model's default (gouache-tiny guides the first half of the steps)
    "cfg_truncation": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1),
}


class Generator:
    """The server's model and settings; ``loader(path_or_None)`` loads a checkpoint (gouache.load_model)."""

    def __init__(self, config: ServerConfig, loader: Callable | None = None):
        self.config = config
        self.loader = loader or (lambda path: _load(path, config.device, config.speed()))
        self.checkpoint = find_checkpoint(config.model).name  # what requests without an override use
        self.loaded = None  # LoadedModel
        self._loaded_name: str | None = None
        self.options: dict[str, Any] = {"CLIP_stop_at_last_layers": 1, "return_grid": True,
                                        "show_progress_every_n_steps": config.preview_every,
                                        "token_merging_ratio": 0.0, "deepcache_interval": 1, "cfg_truncation": None}

    # -- models (worker thread) -------------------------------------------------------------------
    def model_for(self, name: str | None):
        """The loaded model for a checkpoint name (the server's when None), loading it if needed."""
        entry = find_checkpoint(name or self.checkpoint)
        if self._loaded_name != entry.name:
            self.loaded, self._loaded_name = None, None
            gc.collect()  # the old model's memory goes before the new one's comes
            self.loaded, self._loaded_name = self.loader(load_path(entry)), entry.name
        return self.loaded

    def switch(self, name: str, tracker: Tracker | None = None) -> None:
        """``POST /options {"sd_model_checkpoint": name}``: load it and make it the server's model."""
        self.model_for(name)
        self.checkpoint = find_checkpoint(name).name

    # -- options (web thread) ---------------------------------------------------------------------
    def get_options(self) -> dict:
        entry = find_checkpoint(self.checkpoint)
        h = self.loaded.hash if self.loaded is not None and self._loaded_name == entry.name else None
        return {**self.options, "sd_model_checkpoint": title_of(entry, short_hash=h),
                "sd_checkpoint_hash": h, "samples_format": "png", "sd_vae": "Automatic",
                "enable_pnginfo": True, "outdir_samples": str(self.config.out_dir)}

    def check_options(self, body: dict) -> dict:
        """The known settings of a ``POST /options`` body, checked; a checkpoint must be listed."""
        known = {}
        for key, value in body.items():
            if key == "sd_model_checkpoint":
                find_checkpoint(value)
            elif key in SETTABLE:
                if not SETTABLE[key](value):
                    raise InvalidArgument(f"option `{key}` cannot be {value!r}")
                known[key] = value
        return known

    # -- generation (worker thread) ---------------------------------------------------------------
    def generate(self, request: GenerationRequest, parameters: dict, save: bool, send: bool,
                 tracker: Tracker) -> dict:
        """Run one request and return A1111's response (``images`` base64 PNGs with their infotext)."""
        try:
            tracker.check()
            model = self.model_for(request.model)
            self._check_sized(request, model)
            tracker.check()
            results = self._run(model, request, tracker)
        except Interrupted:
            results = []  # A1111 answers an interrupted job normally, with what it has
            model = self.loaded
        if results:  # the fields the body left to the model, as they were used
            used = results[0].request
            for key in ("steps", "cfg_scale", "width", "height"):
                if parameters.get(key) is None:
                    parameters[key] = getattr(used, key)
        not_saved = self._save_all(results, "txt2img" if type(request) is GenerationRequest else "img2img") \
            if save else []
        images = [(r.image, r.infotext) for r in results]
        if len(images) > 1 and self.options["return_grid"]:
            from gouache.images import image_grid

            images.insert(0, (image_grid([r.image for r in results]), results[0].infotext))
        info = _info(model, request, results, tracker, grid=len(images) > len(results))
        info["interrupted"] = tracker.interrupted
        if not_saved:
            info["not_saved"] = not_saved  # the images are still in the response
        warning = _run_warning(parameters.get("infotext"), model)
        if warning:
            info["warnings"] = [warning]
        encoded = [_png_base64(image, text) for image, text in images] if send else []
        return {"images": encoded, "parameters": parameters, "info": json.dumps(info)}

    def render(self, request: GenerationRequest, mode: str, tracker: Tracker) -> list[tuple[Path, str]]:
        """The web UI's job: run ``request`` and save every image under ``<out>/<mode>``; the saved
        files and their infotexts (A1111's UI, too, shows the files it saved). An interrupted job
        gives what it has: nothing."""
        try:
            tracker.check()
            model = self.model_for(request.model)
            self._check_sized(request, model)
            tracker.check()
            results = self._run(model, request, tracker)
        except Interrupted:
            results = []
        return list(zip(self._save(results, mode), [r.infotext for r in results]))

    def interrogate(self, image, tracker: Tracker) -> str:
        """``POST /interrogate`` and the UI's Interrogate button: A1111's Interrogate CLIP prompt for
        ``image``, with the server's CLIP and captioner, both loaded for this job and released after."""
        from contextlib import nullcontext

        from gouache.vision.clip import load_clip
        from gouache.vision.interrogate import flavour_lists, interrogate, open_captioner, reranks

        try:
            tracker.check()
            lists = flavour_lists()
            with load_clip(self.config.clip, self.config.device) as clip:
                captioner, why = open_captioner(self.config.captioner, self.config.device)
                if captioner is None and self.config.captioner is None:
                    logger.warning("gouache: interrogate without a caption: %s", why)
                with captioner if captioner is not None else nullcontext():
                    tracker.check()
                    rerank = reranks(self.config.captioner, self.config.clip)
                    return interrogate(image, clip, captioner, lists, rerank=rerank).prompt
        except Interrupted:
            return ""  # as an interrupted generation answers with what it has: nothing

    def segment(self, image, words: str, options, segmenter: str, tracker: Tracker):
        """The web UI's "Preview mask": the ``L`` mask of ``words`` on ``image`` (``options``: a
        :class:`~gouache.vision.segment.MaskOptions`) by the listed ``segmenter``, loaded for this job."""
        from gouache.vision.segment import mask_image

        try:
            tracker.check()
            return mask_image(image, words, options, segmenter, self.config.device)
        except Interrupted:
            return None

    def remove_background(self, image, segmenter: str, mask_only: bool, tracker: Tracker):
        """``POST /rembg`` and the UI's Remove background: ``image`` as RGBA with its background
        transparent, or (``mask_only``) that alpha as an ``L`` mask, by the listed ``segmenter``."""
        from gouache.vision.segment import remove_background

        try:
            tracker.check()
            cut = remove_background(image, segmenter, self.config.device)
        except Interrupted:
            return None
        return cut.getchannel("A") if mask_only else cut

    def _check_sized(self, request: GenerationRequest, model) -> None:
        """The server's limits again once the model is known, for a request that left its size to the
        model (its native size, or the init image's): the pixels and hires size it will really make."""
        from dataclasses import replace

        from gouache.server.schemas import check_limits

        if isinstance(request, UpscaleRequest) or (request.width and request.height):
            return  # sized where it entered, and checked there
        init = getattr(request, "init_image", None)
        w, h = init.size if init is not None else (model.native_size, model.native_size)
        check_limits(replace(request, width=request.width or w, height=request.height or h), self.config)

    def _run(self, model, request: GenerationRequest, tracker: Tracker, progress=None) -> list[GeneratedImage]:
        """One request on the loaded ``model``; ``progress`` (default the tracker's) takes its steps."""
        every = self.options["show_progress_every_n_steps"]
        progress = progress or tracker.progress
        if isinstance(request, UpscaleRequest):
            from gouache.pipelines.upscale import upscale

            return upscale(model, request, progress)
        if isinstance(request, InpaintRequest):
            from gouache.pipelines.inpaint import inpaint

            return inpaint(model, request, progress)
        if isinstance(request, Img2ImgRequest):
            from gouache.pipelines.img2img import img2img

            return img2img(model, request, progress, tracker.show, every)
        from gouache.pipelines.txt2img import txt2img

        return txt2img(model, request, progress, tracker.show, every)

    def _save_all(self, results: list[GeneratedImage], mode: str) -> list[str]:
        """Save every image it can (``save_images``); what could not be saved, one line each, for the
        response: a full disk costs the files, not the images the client is waiting for."""
        from gouache.metadata.png import next_image_path

        failed = []
        for i, r in enumerate(results):
            try:
                r.save(next_image_path(self.config.out_dir / mode, r.seed))
            except (GouacheError, OSError) as err:
                logger.warning("gouache: image %d (seed %d) not saved: %s", i, r.seed, err)
                failed.append(f"image {i} (seed {r.seed}): {err}")
        return failed

    def _save(self, results: list[GeneratedImage], mode: str) -> list[Path]:
        """Into ``<out>/<mode>``, A1111's file names; the folder is the server's, never the request's."""
        from gouache.metadata.png import next_image_path

        folder = self.config.out_dir / mode
        return [r.save(next_image_path(folder, r.seed)) for r in results]


def _load(path: str | None, device: str, speed=None):
    from gouache.pipelines.model import load_model

    return load_model(path, device=device, speed=speed)


def _run_warning(infotext: str | None, model) -> str | None:
    """When the request's ``infotext`` records another dtype or attention backend than ``model``
    runs with: a warning (logged, and in the response's info), as ``gouache generate --from`` gives."""
    if not infotext or model is None:
        return None
    from gouache.metadata.infotext import parse_infotext
    from gouache.pipelines.fields import run_difference

    difference = run_difference(parse_infotext(infotext), model)
    if difference is None:
        return None
    warning = f"the infotext was made with {difference}: the images may differ in their last bits"
    logger.warning("gouache: %s", warning)
    return warning


def _png_base64(image, infotext: str) -> str:
    from gouache.metadata.png import png_bytes

    return base64.b64encode(png_bytes(image, infotext)).decode("ascii")


def _info(model, request: GenerationRequest, results: list[GeneratedImage], tracker: Tracker, grid: bool) -> dict:
    """A1111's ``Processed.js()``: the first image's settings and every image's seed and infotext."""
    first = results[0].request if results else request
    params = results[0].params if results else {}
    infotexts = [r.infotext for r in results]
    return {
        "prompt": first.prompt, "all_prompts": [r.request.prompt for r in results],
        "negative_prompt": first.negative_prompt, "all_negative_prompts": [r.request.negative_prompt for r in results],
        "seed": first.seed, "all_seeds": [r.seed for r in results],
        "subseed": first.subseed, "all_subseeds": [r.request.subseed for r in results],
        "subseed_strength": first.subseed_strength,
        "width": first.width, "height": first.height, "sampler_name": params.get("Sampler", first.sampler),
        "cfg_scale": first.cfg_scale, "steps": first.steps, "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": getattr(model, "name", None), "sd_model_hash": getattr(model, "hash", None), "sd_vae_name": None, "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": first.denoising_strength if isinstance(first, Img2ImgRequest) or first.enable_hr else None,
        "extra_generation_params": {k: v for k, v in params.items() if k in first.infotext_extra()},
        "index_of_first_image": 1 if grid else 0,
        "infotexts": ([infotexts[0]] if grid else []) + infotexts,
        "styles": list(request.styles), "job_timestamp": tracker.timestamp, "clip_skip": first.clip_skip,
        "is_using_inpainting_conditioning": bool(model is not None and model.is_inpainting and isinstance(first, InpaintRequest)),
        "version": f"gouache {__version__}",
    }
