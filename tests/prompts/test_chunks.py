"""Token chunks as A1111's ``tokenize_line`` builds them: 75 per chunk, the comma rule, BREAK, padding."""

import os
import subprocess
import sys

import pytest

from gouache.errors import InvalidArgument
from gouache.prompts import EmbeddingFix, EmbeddingMatch, PromptChunk, pad_to_same_length, tokenize_chunks

BOS, EOS, COMMA = 49406, 49407, 267
A, CAT, DOG, BREAK_WORD = 320, 2368, 1929, 2568  # CLIP ids of "a", "cat", "dog", "break"


@pytest.fixture(scope="module")
def tokenizer():
    from gouache.models.clip_tokenizer import load_clip_tokenizer

    return load_clip_tokenizer()


def words(*parts) -> str:
    """``words(("cat", 3), ",")`` -> "cat cat cat ,"; each CLIP-tokenizes to exactly one id here."""
    out = []
    for part in parts:
        out += [part[0]] * part[1] if isinstance(part, tuple) else [part]
    return " ".join(out)


def content(chunk: PromptChunk) -> list[int]:
    """The prompt ids of a chunk: between BOS and the first EOS."""
    return chunk.ids[1 : chunk.ids.index(EOS)]


@pytest.mark.parametrize(
    "text", ["", "a cat", "BREAK", words(("cat", 200)), "(a:1.3) [b] BREAK c", words(("cat", 75))]
)
def test_every_chunk_is_bos_75_eos(tokenizer, text):
    for chunk in tokenize_chunks(tokenizer, text):
        assert len(chunk.ids) == len(chunk.weights) == 77
        assert chunk.ids[0] == BOS and chunk.ids[-1] == EOS


def test_empty_prompt_is_one_padding_chunk(tokenizer):
    assert tokenize_chunks(tokenizer, "") == [PromptChunk([BOS] + [EOS] * 76, [1.0] * 77)]


def test_weights_follow_emphasis(tokenizer):
    (chunk,) = tokenize_chunks(tokenizer, "a (cat:1.2) [dog]")
    assert chunk.ids[:5] == [BOS, A, CAT, DOG, EOS]
    assert chunk.weights[:5] == [1.0, 1.0, 1.2, 0.9090909090909091, 1.0]
    assert set(chunk.weights[4:]) == {1.0}  # EOS and padding


@pytest.mark.parametrize(
    "text, expected",
    [
        ("BREAK cat", [[], [CAT]]),  # at the start: an empty first chunk
        ("cat BREAK dog", [[CAT], [DOG]]),
        ("cat BREAK", [[CAT]]),  # at the end: no empty chunk after it
        ("BREAK", [[]]),
        ("cat BREAK BREAK dog", [[CAT], [], [DOG]]),
        ("cat, BREAK dog", [[CAT, COMMA], [DOG]]),
        ("(cat BREAK dog)", [[CAT, BREAK_WORD, DOG]]),  # inside brackets BREAK is a word
    ],
)
def test_break(tokenizer, text, expected):
    assert [content(chunk) for chunk in tokenize_chunks(tokenizer, text)] == expected


def test_break_inside_brackets_keeps_its_negative_weight(tokenizer):
    (chunk,) = tokenize_chunks(tokenizer, "(cat BREAK dog)")
    assert chunk.weights[1:4] == [1.1, -1.1, 1.1]  # as A1111: the word "break" at weight -1.1


def test_200_tokens_without_commas_cut_hard_at_75(tokenizer):
    chunks = tokenize_chunks(tokenizer, words(("cat", 200)))
    assert [len(content(chunk)) for chunk in chunks] == [75, 75, 50]


def test_200_tokens_cut_after_the_last_comma(tokenizer):
    # "cat x9 ," twenty times: commas at 9, 19, ..., 69 of the first chunk. When the 76th token
    # comes, the last comma is 6 back (<= 20), so the 5 cats after it move on to the next chunk,
    # which then holds 9 cats before its first comma.
    text = words(*[("cat", 9), ","] * 20)
    assert len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) == 200
    chunks = tokenize_chunks(tokenizer, text)
    assert [len(content(chunk)) for chunk in chunks] == [70, 70, 60]
    assert chunks[0].ids[70] == COMMA and chunks[0].ids[71:] == [EOS] * 6
    assert content(chunks[1])[:10] == [CAT] * 9 + [COMMA]
    assert content(chunks[2])[-1] == COMMA


@pytest.mark.parametrize(
    "comma_at, backtrack, first_chunk",
    [
        (55, 20, 56),  # 75 - 55 = 20: within reach, cut after the comma
        (54, 20, 75),  # 21 back: too far, hard cut
        (74, 20, 75),  # the comma ends the chunk anyway
        (55, 0, 75),  # 0 turns the rule off
        (54, 25, 55),
        (70, 1, 75),
    ],
)
def test_comma_backtrack_reach(tokenizer, comma_at, backtrack, first_chunk):
    text = words(("cat", comma_at), ",", ("cat", 99 - comma_at))
    chunks = tokenize_chunks(tokenizer, text, comma_backtrack=backtrack)
    assert [len(content(chunk)) for chunk in chunks] == [first_chunk, 100 - first_chunk]


def test_custom_chunk_length(tokenizer):
    chunks = tokenize_chunks(tokenizer, words(("cat", 12)), chunk_length=5)
    full = [BOS] + [CAT] * 5 + [EOS]
    assert [chunk.ids for chunk in chunks] == [full, full, [BOS, CAT, CAT, EOS, EOS, EOS, EOS]]


def test_emphasis_off_reads_brackets_and_break_as_words(tokenizer):
    (plain,) = tokenize_chunks(tokenizer, "(cat:1.2) BREAK", emphasis=False)
    assert set(plain.weights) == {1.0}
    assert content(plain) == tokenizer("(cat:1.2) BREAK", add_special_tokens=False)["input_ids"]


def dog_embedding(vectors):
    """An embedding lookup that finds a `vectors`-vector embedding wherever "dog" stands."""

    def lookup(tokens, position):
        return EmbeddingMatch("dog-emb", vectors=vectors, length=1) if tokens[position] == DOG else None

    return lookup


def test_embedding_takes_its_vectors_with_the_fragment_weight(tokenizer):
    (chunk,) = tokenize_chunks(tokenizer, "a (dog:1.5) cat", embeddings=dog_embedding(3))
    assert chunk.ids[:7] == [BOS, A, 0, 0, 0, CAT, EOS]
    assert chunk.weights[:7] == [1.0, 1.0, 1.5, 1.5, 1.5, 1.0, 1.0]
    assert chunk.fixes == [EmbeddingFix(1, "dog-emb")]


def test_embedding_never_straddles_chunks(tokenizer):
    chunks = tokenize_chunks(tokenizer, words(("cat", 73), "dog"), embeddings=dog_embedding(3))
    assert [len(content(chunk)) for chunk in chunks] == [73, 3]
    assert chunks[0].fixes == [] and chunks[1].fixes == [EmbeddingFix(0, "dog-emb")]


def test_embedding_moves_with_the_comma_cut(tokenizer):
    # A1111 leaves the fix in the old chunk here (its bug); we move it with its placeholder ids.
    text = words(("cat", 60), ",", "dog", ("cat", 20))
    chunks = tokenize_chunks(tokenizer, text, embeddings=dog_embedding(3))
    assert [len(content(chunk)) for chunk in chunks] == [61, 23]
    assert chunks[0].fixes == [] and chunks[1].fixes == [EmbeddingFix(0, "dog-emb")]
    assert content(chunks[1])[:4] == [0, 0, 0, CAT]


def test_embedding_larger_than_a_chunk_is_refused(tokenizer):
    with pytest.raises(InvalidArgument, match="at most 75 vectors"):
        tokenize_chunks(tokenizer, "a dog", embeddings=dog_embedding(80))


def test_pad_to_same_length_adds_empty_chunks(tokenizer):
    short, long = tokenize_chunks(tokenizer, "cat"), tokenize_chunks(tokenizer, words(("cat", 200)))
    padded_short, same_long = pad_to_same_length(short, long)
    assert same_long == long
    assert padded_short == short + tokenize_chunks(tokenizer, "") * 2
    assert pad_to_same_length(long, short) == (long, padded_short)
    assert pad_to_same_length(short, short) == (short, short)


def test_pad_to_same_length_needs_chunks():
    with pytest.raises(InvalidArgument, match="at least one chunk"):
        pad_to_same_length([], [PromptChunk([BOS, EOS], [1.0, 1.0])])


def test_padded_with_replaces_what_follows_the_first_eos(tokenizer):
    (chunk,) = tokenize_chunks(tokenizer, "cat")
    assert chunk.padded_with(0) == [BOS, CAT, EOS] + [0] * 74


@pytest.mark.parametrize(
    "options, message",
    [
        ({"chunk_length": 0}, "`chunk_length`"),
        ({"chunk_length": 7.5}, "`chunk_length`"),
        ({"comma_backtrack": -1}, "`comma_backtrack`"),
    ],
)
def test_bad_lengths_are_explained(tokenizer, options, message):
    with pytest.raises(InvalidArgument, match=message):
        tokenize_chunks(tokenizer, "cat", **options)


def test_importing_prompts_loads_neither_torch_nor_transformers():
    code = "import sys, gouache.prompts; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
