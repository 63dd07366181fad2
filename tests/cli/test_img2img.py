"""`gouache img2img` as a user runs it (in-process, through main())."""

import pytest
from PIL import Image


PROMPT = "a blue square on a yellow background"




def test_img2img_writes_numbered_pngs_with_parameters(run, init_png, tmp_path, tiny_model):
    code, out, err = run("img2img", init_png, PROMPT, "--strength", "0.5", "--steps", "4", "--seed", "7",
                         "--batch-size", "2", "--grid", "--out", tmp_path)
    assert code == 0, err
    assert [p.split("/")[-1] for p in out.split()] == ["00000-7.png", "00001-8.png", "grid-00000-7.png"]
    params = Image.open(tmp_path / "00001-8.png").text["parameters"]
    assert "Steps: 4, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 8, Size: 64x64," in params  # gouache-tiny's default
    assert "Denoising strength: 0.5," in params
    # again into the same folder: new numbers, the old files untouched
    before = (tmp_path / "00000-7.png").read_bytes()
    code, out, _ = run("img2img", init_png, PROMPT, "--strength", "0.5", "--steps", "2", "--seed", "7",
                       "--out", tmp_path)
    assert code == 0 and out.split()[0].endswith("00002-7.png")
    assert (tmp_path / "00000-7.png").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--strength", "1.5"], "--strength must be a number from 0 to 1 (0 keeps the image, 1 replaces it), got 1.5"),
    (["--resize-mode", "5"], "--resize-mode must be one of 0 (Just resize)"),
    (["--width", "100"], "--width must be a multiple of 8, got 100"),
    (["--sampler", "Eulerr"], "unknown sampler 'Eulerr'"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, init_png, args, message, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run("img2img", init_png, PROMPT, "--steps", "2", "--out", out_dir, *args)
    assert code == 1 and err.startswith("gouache: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out_dir.exists()  # checked before the output folder is even made


def test_missing_or_unreadable_init(run, tmp_path):
    code, _, err = run("img2img", tmp_path / "nope.png", PROMPT, "--out", tmp_path / "out")
    assert code == 1 and err == f"gouache: error: init image {tmp_path / 'nope.png'} is not a file; " \
                                "give the path of a PNG, JPEG or WebP image\n"
    (tmp_path / "bad.png").write_text("text")
    code, _, err = run("img2img", tmp_path / "bad.png", PROMPT, "--out", tmp_path / "out")
    assert code == 1 and "is not an image" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_messages_name_the_flags_typed_and_python_keeps_field_names(run, init_png, tmp_path):
    code, _, err = run("img2img", init_png, PROMPT, "--strength", "2", "--steps", "2", "--out", tmp_path)
    assert code == 1 and err.startswith("gouache: error: --strength must be a number from 0"), err
    assert "denoising_strength" not in err and "`" not in err

    from gouache.errors import InvalidArgument
    from gouache.pipelines.request import Img2ImgRequest

    with pytest.raises(InvalidArgument, match="^`denoising_strength` must be"):
        Img2ImgRequest(PROMPT, init_image=Image.open(init_png), denoising_strength=2).validate()
