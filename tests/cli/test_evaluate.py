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


def test_evaluate_clip_score(run, tiny_model, tmp_path):
    """The judge's figures and the mean CLIP score of the same images (a tiny random CLIP)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("vision_conftest_for_evaluate",
                                                  Path(__file__).parents[1] / "vision" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clip = module.write_tiny_clip(tmp_path / "clip")
    code, out, err = run("evaluate", "--n", "2", "--steps", "4", "--clip-score", "--clip", clip)
    assert code == 0, err
    for line in out.splitlines():
        assert "images: all three" in line
        score = float(line.rsplit("; CLIP score ", 1)[1])
        assert 0 <= score <= 100


def test_evaluate_clip_score_without_a_clip(run, tmp_path):
    code, out, err = run("evaluate", "--n", "2", "--clip", str(tmp_path / "absent" / "clip"))
    assert code == 1 and out == ""
    assert err.startswith("gouache: error: ") and "no such CLIP model" in err
