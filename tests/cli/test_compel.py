"""``--prompt-syntax compel`` on the generation commands: the image's metadata and the messages."""

import pytest
from PIL import Image

from gouache.metadata.png import read_infotext

pytest.importorskip("compel")

BLEND = '("a red circle on a blue background", "a yellow circle on a blue background").blend(0.5, 0.5)'


def test_generate_records_the_syntax_and_from_reads_it_back(run, tmp_path):
    code, out, err = run("generate", BLEND, "--prompt-syntax", "compel", "--steps", "2", "--seed", "3",
                         "--out", tmp_path / "a")
    assert code == 0, err
    first = out.split()[0]
    assert "Prompt syntax: compel" in read_infotext(first)
    code, out, err = run("generate", "--from", first, "--out", tmp_path / "b")
    assert code == 0, err
    again = out.split()[0]
    assert "Prompt syntax: compel" in read_infotext(again)
    assert list(Image.open(first).getdata()) == list(Image.open(again).getdata())


def test_a1111_is_the_default_and_equals_it_said_explicitly(run, tmp_path):
    images = []
    for k, extra in enumerate([(), ("--prompt-syntax", "a1111")]):
        code, out, err = run("generate", "a red circle on a blue background", "--steps", "2", "--seed", "3",
                             "--out", tmp_path / str(k), *extra)
        assert code == 0, err
        images.append(out.split()[0])
    assert "Prompt syntax" not in read_infotext(images[0])
    assert list(Image.open(images[0]).getdata()) == list(Image.open(images[1]).getdata())


@pytest.mark.parametrize("argv,message", [
    (["generate", '("a", "b").blend(0.5)', "--prompt-syntax", "compel"], "one weight per prompt"),
    (["img2img", "INIT", "a cat.swap(dog)", "--prompt-syntax", "compel"], ".swap()"),
    (["generate", "a cat", "--negative", "((((((((((((x", "--prompt-syntax", "compel"], "--negative nests parentheses"),
])
def test_bad_compel_syntax_is_one_line_before_anything_loads(run, tmp_path, argv, message):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), "blue").save(init)
    code, out, err = run(*[str(init) if a == "INIT" else a for a in argv], "--out", tmp_path / "out")
    assert code != 0 and out == ""
    assert err.startswith("gouache: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_unknown_syntax_lists_the_choices(run, capsys):
    with pytest.raises(SystemExit) as exit:
        run("generate", "a cat", "--prompt-syntax", "invoke")
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "invalid choice: 'invoke' (choose from 'a1111', 'compel')" in err
