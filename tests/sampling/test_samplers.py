import pytest

from gouache.errors import InvalidArgument, UnknownName
from gouache.sampling.samplers import SAMPLERS, make_scheduler, resolve
from gouache.models.tiny_architecture import SCHEDULER_CONFIG

REQUIRED = ["Euler", "Euler a", "LMS", "Heun", "DPM2", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE",
            "DDIM", "PNDM", "UniPC", "LCM"]


@pytest.mark.parametrize("name", REQUIRED)
def test_a1111_names_make_schedulers(name):
    scheduler = make_scheduler(name, None, SCHEDULER_CONFIG, seeds=[1])
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's betas are kept


@pytest.mark.parametrize(
    "name,schedule,expected",
    [
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M", "karras", ("DPM++ 2M", "Karras")),
        ("dpmpp_2m", "Karras", ("DPM++ 2M", "Karras")),
        ("euler_ancestral", None, ("Euler a", "Automatic")),
        ("euler a", "Automatic", ("Euler a", "Automatic")),
        ("Euler SGM Uniform", None, ("Euler", "SGM Uniform")),
    ],
)
def test_name_forms(name, schedule, expected):
    sampler, sched = resolve(name, schedule)
    assert (sampler.name, sched) == expected


def test_karras_really_changes_the_sigmas():
    plain = make_scheduler("DPM++ 2M", None, SCHEDULER_CONFIG)
    karras = make_scheduler("DPM++ 2M", "Karras", SCHEDULER_CONFIG)
    plain.set_timesteps(20)
    karras.set_timesteps(20)
    assert karras.config.use_karras_sigmas and not plain.config.use_karras_sigmas
    assert plain.timesteps.tolist() != karras.timesteps.tolist()


def test_unknown_sampler_lists_choices():
    with pytest.raises(UnknownName) as e:
        resolve("Eulerr")
    for name in SAMPLERS:
        assert name in str(e.value)


def test_unknown_schedule_lists_choices():
    with pytest.raises(UnknownName, match="Karras"):
        resolve("Euler", "cosine")


def test_schedule_the_sampler_cannot_use():
    with pytest.raises(InvalidArgument, match="not available with sampler 'DDIM'"):
        make_scheduler("DDIM", "Karras", SCHEDULER_CONFIG)


def test_conflicting_schedules():
    with pytest.raises(InvalidArgument, match="already names"):
        resolve("DPM++ 2M Karras", "Exponential")
