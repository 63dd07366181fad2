"""`gouache generate`, `info`, `samplers`, `models` as a user runs them (in-process, through main())."""

import numpy as np
import pytest
from PIL import Image

from gouache.cli import main

PROMPT = "a red circle on a blue background"



def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_model):
    """One `gouache generate` run of 3 images, shared by the tests that read its files."""
    out = tmp_path_factory.mktemp("gen")
    code = main([
        "generate", PROMPT, "--negative", "a green square", "--seed", "123", "--steps", "8", "--cfg", "5",
        "--sampler", "DPM++ 2M", "--batch-size", "3", "--out", str(out), "--grid",
    ])
    assert code == 0
    return out


def test_generate_writes_numbered_pngs_and_a_grid(generated):
    names = sorted(p.name for p in generated.iterdir())
    assert names == ["00000-123.png", "00001-124.png", "00002-125.png", "grid-00000-123.png"]
    assert Image.open(generated / "00000-123.png").size == (64, 64)
    assert Image.open(generated / "grid-00000-123.png").size == (128, 128)


def test_png_carries_a1111_parameters_readable_by_sd_parsers(generated):
    from sd_parsers import ParserManager

    info = ParserManager().parse(generated / "00001-124.png")
    assert info.full_prompt == PROMPT
    assert info.full_negative_prompt == "a green square"
    sampler = info.samplers[0]
    assert sampler.name == "DPM++ 2M"
    assert (sampler.parameters["seed"], sampler.parameters["steps"], sampler.parameters["cfg_scale"]) == ("124", "8", "5.0")


def test_info_prints_the_parameters(run, generated):
    code, out, err = run("info", str(generated / "00000-123.png"))
    assert code == 0
    assert out.splitlines()[0] == PROMPT
    assert out.splitlines()[1] == "Negative prompt: a green square"
    assert "Steps: 8, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 123, Size: 64x64, Model hash: " in out
    assert "Model: gouache-tiny" in out


def test_from_regenerates_bit_for_bit(run, generated, tmp_path):
    # image 2 of the batch, made again on its own from its metadata
    code, out, err = run("generate", "--from", str(generated / "00002-125.png"), "--out", str(tmp_path))
    assert code == 0, err
    (path,) = out.split()
    assert path.endswith("00000-125.png")
    assert np.array_equal(pixels(path), pixels(generated / "00002-125.png"))
    assert Image.open(path).text["parameters"] == Image.open(generated / "00002-125.png").text["parameters"]


def test_from_with_an_override(run, generated, tmp_path):
    code, out, _ = run("generate", "--from", str(generated / "00000-123.png"), "--seed", "7", "--out", str(tmp_path))
    assert code == 0
    assert "Seed: 7," in Image.open(out.split()[0]).text["parameters"]


def test_never_overwrites(run, generated, tmp_path):
    before = {p.name: p.read_bytes() for p in generated.iterdir()}
    code, out, _ = run("generate", PROMPT, "--seed", "123", "--steps", "2", "--out", str(generated))
    assert code == 0
    assert out.split()[0].endswith("00003-123.png")
    for name, data in before.items():
        assert (generated / name).read_bytes() == data
    (generated / "00003-123.png").unlink()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sampler", "Eulerr"], "unknown sampler 'Eulerr'; choose one of: Euler, Euler a"),
        (["--width", "100"], "--width must be a multiple of 8, got 100"),
        (["--steps", "0"], "--steps must be between 1 and 1000, got 0"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--scheduler", "cosine"], "unknown schedule type 'cosine'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(run, args, message, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run("generate", PROMPT, "--steps", "2", "--out", str(out_dir), *args)
    assert code == 1
    assert err.startswith("gouache: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_unknown_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", PROMPT, "--stepz", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--stepz" in err


def test_unwritable_output(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run("generate", PROMPT, "--steps", "2", "--out", str(blocker / "sub"))
    assert code == 1 and err.startswith("gouache: error: cannot create output folder")


def test_corrupt_checkpoint(run, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run("generate", PROMPT, "--steps", "2", "--model", str(bad), "--out", str(tmp_path / "o"))
    assert code == 1 and "broken.safetensors" in err and len(err.strip().splitlines()) == 1


def test_from_an_image_without_parameters(run, tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    code, _, err = run("generate", "--from", str(plain), "--out", str(tmp_path / "o"))
    assert code == 1 and "carries no generation parameters" in err


def test_samplers_lists_every_name(run):
    code, out, _ = run("samplers")
    assert code == 0
    for name in ["Euler a", "DPM++ 2M", "DPM++ SDE", "UniPC", "LCM"]:
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "Karras" in out


def test_models_lists_every_kind_with_the_shipped_ones_marked(run, tiny_model):
    code, out, _ = run("models")
    assert code == 0
    sections = {}
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = sections.setdefault(line[:-1], [])
        elif line.startswith("  "):
            current.append(line.split())
    assert list(sections) == ["checkpoints", "lora", "embeddings", "controlnet", "ip-adapter", "clip", "captioners",
                              "segmenters"]
    assert sections["checkpoints"][0][:2] == ["gouache-tiny", "built-in"]
    assert ["gouache-outline", "built-in"] in [row[:2] for row in sections["lora"]]
    assert ["<sks>", "built-in"] in [row[:2] for row in sections["embeddings"]]
    assert ["gouache-tiny-edges", "built-in"] in [row[:2] for row in sections["controlnet"]]
    assert ["gouache-tiny-clip", "built-in"] in [row[:2] for row in sections["clip"]]
    assert ["gouache-tiny-captioner", "built-in"] in [row[:2] for row in sections["captioners"]]


def test_hires_flags_make_a_bigger_image_that_from_makes_again(run, tmp_path, tiny_model):
    code, out, err = run("generate", PROMPT, "--seed", "9", "--steps", "6", "--hires-scale", "2",
                         "--hires-upscaler", "Lanczos", "--hires-steps", "4", "--hires-strength", "0.4",
                         "--out", tmp_path / "a")
    assert code == 0, err
    first = out.split()[0]
    assert Image.open(first).size == (128, 128)
    code, out, err = run("generate", "--from", first, "--out", tmp_path / "b")
    assert code == 0, err
    assert np.array_equal(pixels(first), pixels(out.split()[0]))


def test_hires_option_without_scale_is_refused(run, tmp_path):
    code, out, err = run("generate", PROMPT, "--hires-steps", "4", "--out", tmp_path)
    assert code == 1
    assert "need --hires-scale" in err


def test_variation_flags_are_recorded(run, tmp_path, tiny_model):
    code, out, err = run("generate", PROMPT, "--seed", "9", "--steps", "4", "--variation-seed", "12",
                         "--variation-strength", "0.25", "--out", tmp_path)
    assert code == 0, err
    assert "Variation seed: 12, Variation seed strength: 0.25" in Image.open(out.split()[0]).text["parameters"]


def test_guide_colour_records_the_guidance(run, tmp_path):
    code, out, _ = run("generate", PROMPT, "--seed", "1", "--steps", "4", "--guide-colour", "0,0,255",
                       "--guide-scale", "300", "--out", tmp_path)
    assert code == 0
    from gouache.metadata.png import read_infotext

    assert 'Guidance colour: "0,0,255", Guidance scale: 300.0' in read_infotext(out.strip())


@pytest.mark.parametrize("argv,message", [
    (["--guide-colour", "blue"], "`--guide-colour` must be R,G,B"),
    (["--guide-scale", "3"], "--guide-scale and --guide-every need --guide-colour"),
])
def test_bad_guidance_flags_are_named(run, tmp_path, argv, message):
    code, _, err = run("generate", PROMPT, *argv, "--out", tmp_path)
    assert code == 1 and message in err


@pytest.mark.parametrize("argv", [
    ["generate"],
    ["img2img", "{init}"],
    ["inpaint", "{init}", "{init}"],
    ["outpaint", "{init}", "--right", "8"],
    ["upscale", "{init}"],
    ["depth2img", "{init}"],
])
def test_a_missing_prompt_is_a_malformed_command_line_exit_2(run, capsys, tmp_path, argv):
    """README: exit code 2 for a malformed command line, as argparse gives for a missing argument;
    `generate` takes its prompt or --from, so it checks itself, in the same one-line form."""
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64)).save(init)
    argv = [a.format(init=init) for a in argv] + ["--steps", "2", "--out", tmp_path / "out"]
    try:
        code, _, err = run(*argv)
    except SystemExit as e:  # argparse's own errors exit from parse_args
        code, err = e.code, capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"gouache {argv[0]}: error: ") and f"(see `gouache {argv[0]} --help`)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_hires_strength_is_named_by_its_flag(run, tmp_path):
    code, _, err = run("generate", PROMPT, "--steps", "2", "--hires-scale", "2", "--hires-strength", "2",
                       "--out", tmp_path)
    assert code == 1 and "--hires-strength must be a number from 0" in err and "denoising_strength" not in err, err


def test_png_records_the_dtype_and_attention_backend(generated):
    text = Image.open(generated / "00000-123.png").text["parameters"]
    assert ", Dtype: fp32, Attention: gouache, Version: gouache " in text  # the suite runs in fp32


@pytest.mark.parametrize("flags,made,now", [
    (["--dtype", "bf16"], "dtype fp32", "bf16"),
    (["--attention", "sdpa"], "attention gouache", "sdpa"),
    (["--dtype", "bf16", "--attention", "sliced"], "dtype fp32 and attention gouache", "bf16 and sliced"),
])
def test_from_with_another_dtype_or_attention_warns_in_one_line(run, generated, tmp_path, flags, made, now):
    image = generated / "00000-123.png"
    code, out, err = run("generate", "--from", image, "--steps", "2", *flags, "--out", tmp_path)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"gouache: warning: {image} was made with {made}; this run uses {now}: "
                        "the image may differ in its last bits"]
    assert f"Dtype: {'bf16' if 'bf16' in flags else 'fp32'}," in Image.open(out.split()[0]).text["parameters"]


def test_from_with_the_same_dtype_and_attention_gives_no_warning(run, generated, tmp_path):
    code, _, err = run("generate", "--from", generated / "00000-123.png", "--steps", "2", "--dtype", "fp32",
                       "--attention", "auto", "--out", tmp_path)
    assert code == 0 and "warning" not in err, err


def test_an_older_png_without_dtype_and_attention_reads_and_gives_no_warning(run, generated, tmp_path):
    from gouache.metadata.png import read_infotext, save_png

    text = read_infotext(generated / "00000-123.png")
    old = text.replace(", Dtype: fp32, Attention: gouache", "")
    assert old != text and "Dtype" not in old
    save_png(Image.open(generated / "00000-123.png"), tmp_path / "old.png", old)
    code, out, err = run("generate", "--from", tmp_path / "old.png", "--steps", "2", "--dtype", "bf16",
                         "--out", tmp_path / "out")
    assert code == 0 and "warning" not in err, err
