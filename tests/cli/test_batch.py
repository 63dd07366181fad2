"""``gouache batch`` on one machine: one PNG per image with its infotext, the manifest, resuming,
and bad lines that fail alone (the Ray runner: tests/batch/test_ray_runner.py)."""

import json
import sys

import pytest
from PIL import Image

from gouache.metadata.png import read_infotext

PROMPTS = ["a red circle on a blue background", "a green square on a yellow background",
           "a blue triangle on a red background"]


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def pngs(out):
    return sorted(p.name for p in out.glob("*.png"))


def write_jobs(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_txt_of_prompts_gives_one_png_each_with_its_infotext(run, tmp_path):
    jobs = tmp_path / "prompts.txt"
    jobs.write_text("# shapes\n" + "\n".join(PROMPTS) + "\n\n")
    code, out, err = run("batch", jobs, "--out", tmp_path / "out", "--steps", 2, "--seed", 9)
    assert code == 0, err
    assert "3 made, 0 there before, 0 failed" in out
    # the comment is line 1: jobs are named by their line
    assert pngs(tmp_path / "out") == ["00002-000-9.png", "00003-000-9.png", "00004-000-9.png"]
    for k, name in enumerate(pngs(tmp_path / "out")):
        text = read_infotext(tmp_path / "out" / name)
        assert text.startswith(PROMPTS[k] + "\n") and "Steps: 2," in text and "Seed: 9," in text
    assert [(e["job"], e["image"], e["seed"], e["file"], e["status"]) for e in manifest(tmp_path / "out")] == \
        [(n, 0, 9, f"{n:05d}-000-9.png", "ok") for n in (2, 3, 4)]


def test_a_job_with_seed_minus_one_gets_the_same_seed_in_every_run(run, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": PROMPTS[0], "steps": 2, "batch-size": 2}])
    for out in ("a", "b"):
        assert run("batch", jobs, "--out", tmp_path / out)[0] == 0
    first, second = pngs(tmp_path / "a"), pngs(tmp_path / "b")
    assert first == second and len(first) == 2
    seeds = [e["seed"] for e in manifest(tmp_path / "a")]
    assert seeds[1] == seeds[0] + 1  # image i: seed + i, as A1111
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in first)


def test_a_run_stopped_half_way_makes_only_the_missing_images_when_run_again(run, tmp_path, monkeypatch):
    import gouache.batch.run as batch_run

    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": p, "steps": 2} for p in PROMPTS + PROMPTS[:1]])
    made = batch_run.local_results

    def interrupted(tasks, **worker):  # Ctrl-C after the second image
        for k, result in enumerate(made(tasks, **worker)):
            if k == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(batch_run, "local_results", interrupted)
    code, _, err = run("batch", jobs, "--out", tmp_path / "out")
    assert code == 130 and "interrupted" in err
    before = {n: (tmp_path / "out" / n).stat().st_mtime_ns for n in pngs(tmp_path / "out")}
    assert len(before) == 2 and len(manifest(tmp_path / "out")) == 2
    monkeypatch.setattr(batch_run, "local_results", made)
    code, out, err = run("batch", jobs, "--out", tmp_path / "out")
    assert code == 0, err
    assert "2 made, 2 there before" in out
    names = pngs(tmp_path / "out")
    assert len(names) == 4 and all((tmp_path / "out" / n).stat().st_mtime_ns == t for n, t in before.items())
    entries = manifest(tmp_path / "out")
    assert [(e["job"], e["image"]) for e in entries] == [(1, 0), (2, 0), (3, 0), (4, 0)]
    assert {e["file"] for e in entries} == set(names)
    # a third run has nothing to do
    assert "0 made, 4 there before" in run("batch", jobs, "--out", tmp_path / "out")[1]


def test_bad_lines_are_named_and_the_rest_of_the_batch_goes_on(run, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {"prompt": PROMPTS[0], "steps": 2, "seed": 1},
        "this is not json",
        {"prompt": PROMPTS[1], "steps": 0},
        {"prompt": PROMPTS[1], "strength": 0.5},
        {"prompt": PROMPTS[2], "model": "no-such-model"},
        ["a list"],
        {"prompt": PROMPTS[2], "steps": 2, "seed": 2},
    ])
    code, out, err = run("batch", jobs, "--out", tmp_path / "out")
    assert code == 1
    lines = err.strip().splitlines()
    # lines that are no request first, then what failed while the images were made
    assert [line.split(": ")[2] for line in lines] == [f"{jobs} line {n}" for n in (2, 3, 4, 6, 5)]
    by_line = {e["job"]: e for e in manifest(tmp_path / "out")}
    assert "not JSON" in by_line[2]["error"]
    assert "`steps` must be between 1 and 1000, got 0" in by_line[3]["error"]
    assert "`strength` is not an option of a text-to-image job" in by_line[4]["error"]
    assert "cannot load model 'no-such-model'" in by_line[5]["error"] and by_line[5]["image"] == 0
    assert "JSON object" in by_line[6]["error"]
    assert {n for n, e in by_line.items() if e["status"] == "ok"} == {1, 7}
    assert pngs(tmp_path / "out") == ["00001-000-1.png", "00007-000-2.png"]
    assert all(line.startswith("gouache: error: ") for line in lines) and len(lines) == 5


def test_img2img_and_inpainting_lines_read_their_images_beside_the_jobs_file(run, tmp_path):
    folder = tmp_path / "jobs"
    (folder / "in").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "in" / "red.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(folder / "in" / "mask.png")
    jobs = write_jobs(folder / "jobs.jsonl", [
        {"prompt": PROMPTS[2], "init": "in/red.png", "strength": 0.5, "seed": 3},
        {"prompt": PROMPTS[0], "init": "in/red.png", "mask": "in/mask.png", "seed": 4},
    ])
    code, out, err = run("batch", jobs, "--out", tmp_path / "out", "--steps", 2)
    assert code == 0, err
    img2img, inpaint = (read_infotext(tmp_path / "out" / n) for n in pngs(tmp_path / "out"))
    assert "Denoising strength: 0.5" in img2img and "Mask blur" not in img2img
    assert "Mask blur: 4" in inpaint
    made = Image.open(tmp_path / "out" / "00002-000-4.png").convert("RGB")
    assert made.getpixel((2, 2)) == (200, 30, 30)  # outside the mask: the init image, kept


def test_changed_jobs_are_not_taken_for_done_ones(run, tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": PROMPTS[0], "steps": 2, "seed": 1}])
    assert run("batch", jobs, "--out", tmp_path / "out")[0] == 0
    write_jobs(jobs, [{"prompt": PROMPTS[1], "steps": 2, "seed": 1}])
    code, _, err = run("batch", jobs, "--out", tmp_path / "out")
    assert code == 1 and "made by other options on line 1" in err and "--overwrite" in err
    code, out, _ = run("batch", jobs, "--out", tmp_path / "out", "--overwrite")
    assert code == 0 and "1 made" in out
    assert read_infotext(tmp_path / "out" / "00001-000-1.png").startswith(PROMPTS[1])


def test_ray_not_installed_says_how_to_install_it(run, tmp_path, monkeypatch):
    jobs = write_jobs(tmp_path / "jobs.txt", [PROMPTS[0]])
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run("batch", jobs, "--out", tmp_path / "out", "--ray")
    assert code == 1 and err.strip().splitlines() == ["gouache: error: --ray needs Ray with Ray Data: "
                                                      "pip install 'gouache[ray]'"]


@pytest.mark.parametrize("address, message", [
    ("ray://127.0.0.1:9", "cannot reach the Ray cluster at ray://127.0.0.1:9"),
    ("http://x", "expected nothing (a Ray started here), auto"),
])
def test_a_cluster_that_cannot_be_reached_is_one_line(run, tmp_path, address, message):
    pytest.importorskip("ray")
    jobs = write_jobs(tmp_path / "jobs.txt", [PROMPTS[0]])
    code, _, err = run("batch", jobs, "--out", tmp_path / "out", "--ray", address)
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err
