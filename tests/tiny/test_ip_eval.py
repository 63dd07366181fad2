"""The IP-Adapter bar's cases and their judging."""

from gouache.tiny.ip_eval import IPScore, ip_adapter_score, ip_case
from gouache.tiny.judge import read_image
from gouache.tiny.shapes import HELD_OUT


def test_cases_prompt_with_one_background_and_ask_for_another():
    for held_out in (False, True):
        for k in range(24):
            case = ip_case(k, held_out)
            read = read_image(case.image)
            assert (read.colour, read.shape) == (case.colour, case.shape)
            assert read.background not in (case.background, case.colour)
            assert case.text == f"on a {case.background} background"
            assert ((case.colour, case.shape) in HELD_OUT) == held_out
    assert ip_case(3, False).image.tobytes() == ip_case(3, False).image.tobytes()  # the same on every run


def test_a_score_counts_each_attribute_and_the_misses():
    case = ip_case(0, False)
    score = IPScore()
    score.add(0, case, case.image)  # the prompt itself: colour and shape right, the background the prompt's
    assert (score.n, score.colour, score.shape, score.background, score.right) == (1, 1, 1, 0, 0)
    assert score.misses[0][0] == 0 and score.as_dict()["colour"] == 1.0


def test_the_score_runs_the_adapter_through_generation(tiny_model, tiny_ip_adapter):
    score = ip_adapter_score(tiny_model, "tiny-ip", held_out=True, n=2, steps=2)
    assert score.n == 2 and 0 <= score.rate <= 1
