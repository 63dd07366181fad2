import pytest

from gouache.errors import GouacheError, InvalidArgument
from gouache.pipelines.request import GenerationRequest


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("steps", 0, "`steps` must be between 1 and 1000, got 0"),
        ("steps", 2.5, "`steps` must be a whole number"),
        ("width", 100, "`width` must be a multiple of 8, got 100 (try 96 or 104)"),
        ("height", 30, "`height` must be between 64 and 4096"),
        ("cfg_scale", float("nan"), "`cfg_scale` must be a number"),
        ("seed", -2, "`seed` must be between -1"),
        ("batch_size", 0, "`batch_size` must be between 1 and 64"),
        ("sampler", "Eulerr", "unknown sampler 'Eulerr'"),
    ],
)
def test_bad_values_name_the_field(field, value, message):
    req = GenerationRequest("a red circle on a blue background", **{field: value})
    with pytest.raises(GouacheError) as e:
        req.validate()
    assert message in str(e.value)


def test_random_seed_is_fixed_once():
    req = GenerationRequest("x").with_seed()
    assert 0 <= req.seed < 2**32
    assert req.with_seed().seed == req.seed


def test_defaults_are_valid():
    GenerationRequest("x").validate()
    with pytest.raises(InvalidArgument):
        GenerationRequest(None).validate()  # type: ignore[arg-type]
