"""Samplers by the names AUTOMATIC1111 users know, each a diffusers scheduler.

AUTOMATIC1111 1.9 split a sampler ("DPM++ 2M") from its schedule type ("Karras"); the older joined
names ("DPM++ 2M Karras") are accepted too, and so are ComfyUI's names (``dpmpp_2m``,
``euler_ancestral``). The mapping follows diffusers' own table of A1111/k-diffusion equivalents.
An unknown name is an error that lists the valid ones — never a silent fallback.

>>> sampler, schedule = resolve("DPM++ 2M Karras")
>>> sampler.name, schedule
('DPM++ 2M', 'Karras')
>>> make_scheduler("Euler a", "Automatic", {"beta_schedule": "scaled_linear"}).__class__.__name__
'EulerAncestralDiscreteScheduler'
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from gouache.errors import InvalidArgument, UnknownName


@dataclass(frozen=True)
class Sampler:
    name: str  # A1111's display name, written to infotext
    scheduler: str  # diffusers class name
    options: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # ComfyUI / k-diffusion spellings
    stochastic: bool = False  # draws fresh noise every step (seeded per image)


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in [
        Sampler("Euler", "EulerDiscreteScheduler", aliases=("euler", "k_euler")),
        Sampler("Euler a", "EulerAncestralDiscreteScheduler", aliases=("euler_ancestral", "k_euler_a", "euler_a"), stochastic=True),
        Sampler("LMS", "LMSDiscreteScheduler", aliases=("lms", "k_lms")),
        Sampler("Heun", "HeunDiscreteScheduler", aliases=("heun", "k_heun")),
        Sampler("DPM2", "KDPM2DiscreteScheduler", aliases=("dpm_2", "k_dpm_2")),
        Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", aliases=("dpm_2_ancestral", "k_dpm_2_a"), stochastic=True),
        Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
                aliases=("dpmpp_2m", "k_dpmpp_2m")),
        Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                aliases=("dpmpp_2m_sde",), stochastic=True),
        Sampler("DPM++ SDE", "DPMSolverSDEScheduler", aliases=("dpmpp_sde", "k_dpmpp_sde"), stochastic=True),
        Sampler("DDIM", "DDIMScheduler", {"set_alpha_to_one": False}, aliases=("ddim",)),
        Sampler("PNDM", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("pndm",)),
        Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("plms",)),
        Sampler("UniPC", "UniPCMultistepScheduler", aliases=("uni_pc", "unipc")),
        Sampler("LCM", "LCMScheduler", aliases=("lcm",)),
    ]
}

# Schedule types (A1111 1.9's "Schedule type"): how the noise levels of the steps are spaced.
SCHEDULES: dict[str, dict] = {
    "Automatic": {},
    "Uniform": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


def _lookup(table: dict, name: str, extra: dict | None = None):
    wanted = _key(name)
    for canonical, value in table.items():
        if _key(canonical) == wanted:
            return canonical, value
    for alias, canonical in (extra or {}).items():
        if _key(alias) == wanted:
            return canonical, table[canonical]
    return None, None


def resolve(sampler: str, schedule: str | None = None) -> tuple[Sampler, str]:
    """A sampler name (A1111, legacy joined, or ComfyUI spelling) and schedule type → (Sampler, schedule)."""
    aliases = {a: s.name for s in SAMPLERS.values() for a in s.aliases}
    canonical, spec = _lookup(SAMPLERS, sampler, aliases)
    joined_schedule = None
    if spec is None:  # "DPM++ 2M Karras" → ("DPM++ 2M", "Karras")
        for sched in sorted(SCHEDULES, key=len, reverse=True):  # "SGM Uniform" before "Uniform"
            suffix = " " + _key(sched)
            if _key(sampler).endswith(suffix):
                canonical, spec = _lookup(SAMPLERS, sampler.strip()[: -len(suffix)], aliases)
                if spec is not None:
                    joined_schedule = sched
                    break
    if spec is None:
        raise UnknownName(
            f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)} "
            f"(a schedule type may follow, e.g. 'DPM++ 2M Karras'; see `gouache samplers`)"
        )
    if schedule is None or _key(schedule) == "automatic":
        schedule_name = joined_schedule or "Automatic"
    else:
        schedule_name, _ = _lookup(SCHEDULES, schedule, {"sgm_uniform": "SGM Uniform", "simple": "SGM Uniform"})
        if schedule_name is None:
            raise UnknownName(f"unknown schedule type {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if joined_schedule and joined_schedule != schedule_name:
            raise InvalidArgument(
                f"sampler {sampler!r} already names schedule {joined_schedule!r} but --scheduler says {schedule!r}"
            )
    return spec, schedule_name


def _scheduler_class(spec: Sampler):
    import diffusers

    return getattr(diffusers, spec.scheduler)


def supported_schedules(sampler: str) -> list[str]:
    spec, _ = resolve(sampler)
    params = inspect.signature(_scheduler_class(spec).__init__).parameters
    return [name for name, opts in SCHEDULES.items() if all(k in params for k in opts)]


def make_scheduler(sampler: str, schedule: str | None, base_config: dict, seeds: list[int] | None = None):
    """A fresh diffusers scheduler for ``sampler``/``schedule`` on top of the model's own config
    (betas, prediction type, timestep offset are the model's; the algorithm is the sampler's)."""
    spec, schedule_name = resolve(sampler, schedule)
    cls = _scheduler_class(spec)
    params = inspect.signature(cls.__init__).parameters
    extra = SCHEDULES[schedule_name]
    if any(k not in params for k in extra):
        raise InvalidArgument(
            f"schedule type {schedule_name!r} is not available with sampler {spec.name!r}; "
            f"choose one of: {', '.join(supported_schedules(spec.name))}"
        )
    # Only what this class takes: a PNDM config's `skip_prk_steps` means nothing to Euler.
    config = {k: v for k, v in dict(base_config).items() if k in params}
    # Options the model's scheduler config carries but that belong to another algorithm.
    for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "algorithm_type", "solver_order"):
        config.pop(k, None)
    config.update(spec.options)
    config.update(extra)
    if "noise_sampler_seed" in params and seeds is not None:
        # DPM++ SDE draws its noise from Brownian trees: one per image, seeded like the image
        config["noise_sampler_seed"] = [s + 0x5EED for s in seeds]
    return cls.from_config(config)


def describe() -> list[tuple[str, str, list[str]]]:
    """(name, diffusers scheduler, schedule types) for every sampler — what `gouache samplers` prints."""
    return [(s.name, s.scheduler, supported_schedules(s.name)) for s in SAMPLERS.values()]
