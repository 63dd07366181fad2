"""Samplers × scheduler configs × CFG × steps on gouache-tiny, judged by gouache.tiny.judge.

Each setting generates N images of the seen-pair prompts (``evaluation_prompts(False, N)``, seed
``SEED + i`` for image i) and prints one table row: right (colour, shape and background all read
back) / total, plus colour / shape / background separately.

Settings are given as ``NAME`` or ``NAME@key=value,key=value``:

* a gouache sampler name (``"PNDM"``, ``"DPM++ 2M SDE"``), run through ``gouache.txt2img``'s own
  path; keys after ``@`` override the diffusers scheduler's config *after* gouache builds it
  (``"PNDM@skip_prk_steps=False"``, ``"LMS@timestep_spacing=trailing"``), plus the special keys
  ``cfg``, ``steps``, ``rescale`` (CFG rescale φ, Lin et al. 2023, applied to gouache's guided
  prediction), ``class`` (use another diffusers scheduler class on the same config), ``order``
  (LMS's linear-multistep order, ``step(order=...)``; 4 by default) and ``trunc`` (gouache's
  ``cfg_truncation``: guidance off after that fraction of the steps);
* ``diffusers`` / ``diffusers@...``: plain ``StableDiffusionPipeline.from_pretrained(<materialised
  gouache-tiny folder>)`` with diffusers' defaults (the folder's scheduler, 50 steps, CFG 7.5) unless
  overridden: ``steps``, ``cfg``, ``rescale`` (diffusers' ``guidance_rescale``), ``class``
  (e.g. ``class=DPMSolverMultistepScheduler``: that scheduler from the folder's config), and any
  scheduler config key.

Run (2 shared cores: keep it small and niced)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/quality/sampler_sweep.py \\
        --n 8 Euler PNDM PLMS "PNDM@cfg=1" "PNDM@steps=50" diffusers "diffusers@steps=20"

Options: ``--all`` runs every sampler ``gouache samplers`` lists but LCM; ``--with trunc=0.4`` adds
keys to every setting; ``--held-out`` uses the held-out pairs' prompts; ``--failures`` prints what
the judge read; ``--save DIR`` keeps the images; ``--model PATH`` runs gouache on another folder and
``--folder PATH`` plain diffusers on one (see folder_with_scheduler.py); ``--base-scheduler CLASS``
swaps the loaded model's scheduler as ``CLASS.from_config(folder config)`` would (keys left at their
class default, e.g. PNDM's ``timestep_spacing``, are *not* carried over). ``--diag`` prints, for the
first prompt of each setting, per model call: RMS of the UNet input, of ε_uncond, ε_cond,
ε_cond − ε_uncond, the guided ε, and of the predicted x0 (guided and conditional), instead of judging.

Measured (2026, this repo's shipped weights, seeds 1000+, seen pairs unless said):

    --n 16 --all                      Euler/Euler a/Heun/DPM2/DPM++ 2M/DPM++ SDE/DDIM 16/16, DPM2 a 13/16,
                                      DPM++ 2M SDE 12/16, UniPC 14/16, LMS 0/16, PNDM 0/16, PLMS 0/16
    --n 32 --all --with trunc=0.4     every sampler 32/32 but DPM2 a 31/32 (CFG 7: the same)
    --n 16 diffusers "diffusers@steps=20"                       1/16, 0/16
    --n 16 --folder /tmp/gt-ddim diffusers "diffusers@steps=20" 16/16, 16/16
"""

from __future__ import annotations

import argparse
import ast
import sys
import time

import torch

torch.set_num_threads(1)


def parse_setting(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("@")
    opts = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        try:
            opts[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            opts[k.strip()] = v.strip()
    return name.strip(), opts


def with_overrides(config, over: dict) -> dict:
    """``config`` (a scheduler's) with ``over`` applied so that ``from_config`` keeps them: diffusers'
    ``from_config`` silently drops every key listed in ``_use_default_values``, even one set here."""
    cfg = dict(config)
    cfg["_use_default_values"] = [k for k in cfg.get("_use_default_values", []) if k not in over]
    cfg.update(over)
    return cfg


SPECIAL = ("cfg", "steps", "rescale", "class", "order", "trunc")


def rescale_guided(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed",
    §3.4), as diffusers' ``rescale_noise_cfg``: match the guided prediction's std to the conditional
    prediction's, then mix ``phi`` of that with ``1 - phi`` of the plain guided one."""
    dims = list(range(1, guided.ndim))
    std_cond = cond.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True)
    rescaled = guided * (std_cond / std_guided)
    return phi * rescaled + (1 - phi) * guided


class Gouache:
    """Settings run through gouache's own txt2img."""

    def __init__(self, model=None):
        from gouache.pipelines.model import load_model

        self.model = load_model(model, dtype="fp32")

    def images(self, sampler: str, opts: dict, prompts: list[str], seed: int, default_steps: int, default_cfg: float):
        import gouache.pipelines.engine as engine
        import gouache.pipelines.txt2img as t2i
        import gouache.sampling.guidance as guidance
        from gouache.pipelines.request import GenerationRequest

        sched_over = {k: v for k, v in opts.items() if k not in SPECIAL}
        cls_name = opts.get("class")
        orig_make = engine.make_scheduler

        def make(*a, **kw):
            s = orig_make(*a, **kw)
            if sched_over or cls_name:
                import diffusers

                cls = getattr(diffusers, cls_name) if cls_name else type(s)
                s = cls.from_config(with_overrides(s.config, sched_over))
            if "order" in opts:  # LMS's step(order=4): the linear multistep order
                import functools

                s.step = functools.partial(s.step, order=opts["order"])
            return s

        phi = opts.get("rescale", 0.0)
        orig_call = guidance.CFGDenoiser.__call__

        def call(self, x, t, step, slot=0):
            if x.shape[0] > 1 or phi == 0:
                return orig_call(self, x, t, step, slot)
            conds, uncond = self.conditioning_at(step)
            batch = guidance.Conditioning.cat([uncond, conds[0][0]])
            eu, ec = self.model_call(torch.cat([x, x]), t, batch, step, slot).chunk(2)
            return rescale_guided(eu + self.scale * (ec - eu), ec, phi)

        engine.make_scheduler = make
        guidance.CFGDenoiser.__call__ = call
        try:
            out = []
            for i, p in enumerate(prompts):
                extra = {"cfg_truncation": opts["trunc"]} if "trunc" in opts else {}
                req = GenerationRequest(p, steps=opts.get("steps", default_steps), sampler=sampler,
                                        cfg_scale=opts.get("cfg", default_cfg), seed=seed + i, **extra)
                out.append(t2i.txt2img(self.model, req)[0].image)
            return out
        finally:
            engine.make_scheduler = orig_make
            guidance.CFGDenoiser.__call__ = orig_call


class Diffusers:
    """Settings run through plain diffusers on the materialised gouache-tiny folder."""

    def __init__(self, folder=None):
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import logging

        from gouache.models.builtin import materialize
        from gouache.models.home import models_dir

        logging.set_verbosity_error()
        self.folder = folder or materialize(models_dir("builtin"))
        self.pipe = StableDiffusionPipeline.from_pretrained(self.folder, safety_checker=None)
        self.pipe.set_progress_bar_config(disable=True)
        self.base_scheduler = self.pipe.scheduler

    def images(self, opts: dict, prompts: list[str], seed: int):
        import diffusers

        sched_over = {k: v for k, v in opts.items() if k not in SPECIAL}
        cls = getattr(diffusers, opts["class"]) if "class" in opts else type(self.base_scheduler)
        self.pipe.scheduler = cls.from_config(with_overrides(self.base_scheduler.config, sched_over))
        kw = {}
        if "steps" in opts:
            kw["num_inference_steps"] = opts["steps"]
        if "cfg" in opts:
            kw["guidance_scale"] = opts["cfg"]
        if "rescale" in opts:
            kw["guidance_rescale"] = opts["rescale"]
        out = []
        for i, p in enumerate(prompts):
            g = torch.Generator("cpu").manual_seed(seed + i)
            out.append(self.pipe(p, generator=g, **kw).images[0])
        return out


def diagnose(runner: Gouache, sampler: str, opts: dict, prompt: str, seed: int, steps: int, cfg: float) -> None:
    """Per step: |eps_uncond|, |eps_cond|, |cond-uncond|, |guided| (RMS per element) and the RMS of
    the predicted x0 (from the guided eps), for one image through gouache's loop."""
    import gouache.pipelines.engine as engine
    import gouache.pipelines.txt2img as t2i
    import gouache.sampling.guidance as guidance
    from gouache.pipelines.request import GenerationRequest

    rows = []
    sched_holder = {}
    orig_make = engine.make_scheduler
    sched_over = {k: v for k, v in opts.items() if k not in SPECIAL}

    def make(*a, **kw):
        s = orig_make(*a, **kw)
        if sched_over or "class" in opts:
            import diffusers

            cls = getattr(diffusers, opts["class"]) if "class" in opts else type(s)
            s = cls.from_config(with_overrides(s.config, sched_over))
        sched_holder["s"] = s
        return s

    orig_call = guidance.CFGDenoiser.__call__
    alphas = None

    def call(self, x, t, step, slot=0):
        nonlocal alphas
        conds, uncond = self.conditioning_at(step)
        batch = guidance.Conditioning.cat([uncond, conds[0][0]])
        eu, ec = self.model_call(torch.cat([x, x]), t, batch, step, slot).chunk(2)
        g = eu + self.scale * (ec - eu)
        if opts.get("rescale"):
            g = rescale_guided(g, ec, opts["rescale"])
        if alphas is None:
            from gouache.tiny.recipe import build_noise_scheduler

            alphas = build_noise_scheduler().alphas_cumprod
        ti = int(t)
        a = alphas[ti]
        # x as the UNet saw it (scale_model_input applied): x_t = sqrt(a) x0 + sqrt(1-a) eps
        x0 = (x - (1 - a).sqrt() * g) / a.sqrt()
        x0c = (x - (1 - a).sqrt() * ec) / a.sqrt()
        rms = lambda v: float(v.pow(2).mean().sqrt())  # noqa: E731
        rows.append((step, float(t), rms(x), rms(eu), rms(ec), rms(ec - eu), rms(g), rms(x0), rms(x0c)))
        return g

    engine.make_scheduler = make
    guidance.CFGDenoiser.__call__ = call
    try:
        req = GenerationRequest(prompt, steps=opts.get("steps", steps), sampler=sampler,
                                cfg_scale=opts.get("cfg", cfg), seed=seed)
        img = t2i.txt2img(runner.model, req)[0].image
    finally:
        engine.make_scheduler = orig_make
        guidance.CFGDenoiser.__call__ = orig_call
    from gouache.tiny.judge import read_image

    s = sched_holder["s"]
    print(f"{sampler} {opts} {prompt!r} seed {seed}: judged {read_image(img).as_tuple()}")
    print(f"timesteps {[int(x) for x in s.timesteps]}")
    print(f"{'call':>4} {'step':>4} {'t':>6} {'|x_in|':>7} {'|e_u|':>6} {'|e_c|':>6} {'|c-u|':>6} {'|e_g|':>6} {'|x0_g|':>7} {'|x0_c|':>7}")
    for j, r in enumerate(rows):
        print(f"{j:>4} {r[0]:>4} {r[1]:>6.0f} {r[2]:>7.3f} {r[3]:>6.3f} {r[4]:>6.3f} {r[5]:>6.3f} {r[6]:>6.3f} {r[7]:>7.3f} {r[8]:>7.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", help="NAME or NAME@key=value,... (see above)")
    ap.add_argument("--n", type=int, default=8, help="images per setting (seen-pair prompts)")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20, help="gouache settings' steps unless @steps=")
    ap.add_argument("--cfg", type=float, default=5.0, help="gouache settings' CFG unless @cfg=")
    ap.add_argument("--all", action="store_true", help="every sampler `gouache samplers` lists")
    ap.add_argument("--failures", action="store_true", help="print what the judge read for each wrong image")
    ap.add_argument("--save", help="write the images here (one folder per setting)")
    ap.add_argument("--diag", action="store_true", help="per-step norms of one image per setting instead")
    ap.add_argument("--held-out", action="store_true", help="the held-out pairs' prompts instead of the seen pairs'")
    ap.add_argument("--with", dest="common", default="", help="key=value,... added to every setting (e.g. trunc=0.5)")
    ap.add_argument("--model", help="gouache settings: this model (name or path) instead of the built-in")
    ap.add_argument("--folder", help="diffusers settings: this pipeline folder instead of the materialised "
                                     "gouache-tiny (e.g. a copy whose scheduler_config.json names another class)")
    ap.add_argument("--base-scheduler", help="gouache settings: replace the model's scheduler (its config: the "
                                             "shipped folder's) by this diffusers class on the same config first, "
                                             "as if the folder shipped it")
    args = ap.parse_args(argv)

    from gouache.sampling.samplers import SAMPLERS
    from gouache.tiny.judge import evaluation_prompts, score

    settings = list(args.settings)
    if args.all:
        settings = [s for s in SAMPLERS if s != "LCM"] + settings  # LCM: a distilled model's sampler
    if args.common:
        settings = [s + ("," if "@" in s else "@") + args.common for s in settings]
    prompts = evaluation_prompts(args.held_out, args.n)
    runners: dict[str, object] = {}
    print(f"{'setting':<60} {'right':>7} {'col':>4} {'shp':>4} {'bg':>4} {'s/img':>6}")
    for text in settings:
        name, opts = parse_setting(text)
        t0 = time.time()
        if name == "diffusers":
            if args.diag:
                print("--diag works on gouache settings only", file=sys.stderr)
                continue
            if "diffusers" not in runners:
                runners["diffusers"] = Diffusers(args.folder)
                print(f"folder {runners['diffusers'].folder}: scheduler {type(runners['diffusers'].base_scheduler).__name__}")
            images = runners["diffusers"].images(opts, prompts, args.seed)
        else:
            if "gouache" not in runners:
                runners["gouache"] = Gouache(args.model)
                if args.base_scheduler:
                    import diffusers

                    m = runners["gouache"].model
                    cls = getattr(diffusers, args.base_scheduler)
                    m.pipeline.scheduler = cls.from_config(dict(m.pipeline.scheduler.config))
                    print(f"model scheduler: {dict(m.pipeline.scheduler.config)}")
            if args.diag:
                diagnose(runners["gouache"], name, opts, prompts[0], args.seed, args.steps, args.cfg)
                continue
            images = runners["gouache"].images(name, opts, prompts, args.seed, args.steps, args.cfg)
        s = score(images, prompts)
        dt = (time.time() - t0) / max(len(images), 1)
        print(f"{text:<60} {s.all_three:>3}/{s.n:<3} {s.colour:>4} {s.shape:>4} {s.background:>4} {dt:>6.2f}", flush=True)
        if args.failures:
            for p, got in s.failures:
                print(f"    {p!r} -> {got}")
        if args.save:
            from pathlib import Path

            d = Path(args.save, "".join(c if c.isalnum() or c in "=.,-" else "_" for c in text))
            d.mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(images):
                im.save(d / f"{i:03d}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
