"""`gouache evaluate`: the judge's figures for each task (a few images, to check it runs and reports)."""

import pytest


@pytest.mark.parametrize(
    "task,expected",
    [("txt2img", ["    seen: 2 images: all three", "held_out: 2 images: all three"]),
     ("img2img", ["strength 0.3, own caption, kept:", "strength 1.0, another prompt, follows: 2 images"]),
     ("inpaint", ["new colour and shape: 2 images", "changed pixel outside the mask: 0"])],
)
def test_evaluate_reports(run, task, expected, tiny_model):
    code, out, err = run("evaluate", "--task", task, "--n", "2", "--steps", "6")
    assert code == 0, err
    for text in expected:
        assert text in out
