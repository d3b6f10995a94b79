"""Character-level next-token data (optexp.data.text): windows and their labels, splits
that do not leak, the corpus the pinned package ships (checked by sha256), and a text
file of the user's, each refusal in one line."""

from __future__ import annotations

import pytest
import torch

from optexp.config import ConfigError, UserError
from optexp.data import text
from optexp.parts import build

TEXT = "the quick brown fox jumps over the lazy dog. " * 20  # 900 characters, 29 distinct


def decode(tokens: torch.Tensor) -> str:
    """Tokens back to characters: the classes are TEXT's characters in code-point order."""
    alphabet = sorted(set(TEXT))
    return "".join(alphabet[int(t)] for t in tokens)


def windows(seq_len: int, val: float, test: float, max_chars=None, stride=1):
    return text.char_windows(TEXT, seq_len, max_chars, stride, val, test)


def test_a_window_is_seq_len_characters_and_its_label_the_next_one():
    data = windows(seq_len=10, val=0.1, test=0.1)
    assert data.num_classes == len(set(TEXT)) and data.input_shape == (10,)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.long
    # 720 train characters: windows start at 0 .. 709, each followed by its label
    assert len(data.train) == 710 and (len(data.val), len(data.test)) == (80, 80)
    for i in (0, 1, 333, 709):
        assert decode(data.train.x[i]) + decode(data.train.y[i : i + 1]) == TEXT[i : i + 11]


def test_splits_are_contiguous_blocks_and_no_window_crosses_into_another():
    data = windows(seq_len=8, val=0.2, test=0.1)
    blocks = {"train": (0, 630), "val": (630, 810), "test": (810, 900)}
    for name, (start, end) in blocks.items():
        split = getattr(data, name)
        assert len(split) == end - start - 8  # every window, inside its block
        assert decode(split.x[0]) + decode(split.y[:1]) == TEXT[start : start + 9]
        # the last window's label is its block's last character
        assert decode(split.x[-1]) + decode(split.y[-1:]) == TEXT[end - 9 : end]


def test_stride_and_max_chars_cut_the_samples():
    data = windows(seq_len=4, val=0.1, test=0.0, max_chars=100, stride=3)
    assert data.test is None and len(data.val) == 2  # 10 val characters: windows at 0 and 3
    assert len(data.train) == 29  # 90 train characters: starts 0, 3, ..., 84
    assert decode(data.train.x[1]) + decode(data.train.y[1:2]) == TEXT[3:8]
    assert data.num_classes == len(set(TEXT[:100]))


def test_a_split_too_short_for_one_window_names_seq_len():
    with pytest.raises(ConfigError) as raised:
        windows(seq_len=90, val=0.1, test=0.1)
    message = str(raised.value)
    assert raised.value.key == "dataset.seq_len" and "\n" not in message
    assert "val split (90 of 900 characters)" in message and "dataset.val_fraction" in message


def test_the_news_corpus_is_the_pinned_packages_copy():
    data = text.lee_news(seq_len=32, max_chars=None, stride=1)
    assert data.num_classes == 81  # distinct characters of the whole corpus
    n_val = round(360_082 * 0.1)  # of 360,082 characters; a block of n gives n - 32 windows
    assert len(data.train) == 360_082 - 2 * n_val - 32
    assert len(data.val) == len(data.test) == n_val - 32


def test_a_different_corpus_file_or_none_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(text, "LEE_SHA256", "0" * 64)
    with pytest.raises(UserError) as raised:
        text.lee_news()
    message = str(raised.value)
    assert "\n" not in message and "lee_background.cor has sha256 5d78d6dafd95" in message
    assert message.endswith("pip install gensim==4.4.0")
    monkeypatch.undo()

    monkeypatch.setattr(text, "LEE_FILE", ("test", "test_data", "gone.cor"))  # another version
    with pytest.raises(UserError, match=r"^dataset=lee_news: gensim 4.4.0 has no .*gone.cor"):
        text.lee_news()
    monkeypatch.undo()

    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^dataset=lee_news reads its text from the gensim"):
        text.lee_news()


def test_a_text_file_is_read_from_data_dir_by_name(tmp_path, make_cfg):
    (tmp_path / "poem.txt").write_text(TEXT, encoding="utf-8")
    cfg = make_cfg("dataset=text_file", "dataset.name=poem", "dataset.seq_len=10")
    data = build("dataset", cfg.dataset, data_dir=str(tmp_path))
    same = windows(seq_len=10, val=0.1, test=0.1)
    assert torch.equal(data.train.x, same.train.x) and torch.equal(data.test.y, same.test.y)


@pytest.mark.parametrize(
    ("content", "url", "expected"),
    [
        (None, None, "To provide it, put a UTF-8 text file at {path}; or set data_dir"),
        (None, "https://example.org/t.txt", "download https://example.org/t.txt and save it"),
        (b"\xff\xfe\x00bad", None, "dataset=text_file cannot read {path} as UTF-8 text ("),
    ],
)
def test_a_missing_or_unreadable_text_file_is_one_line(tmp_path, content, url, expected):
    path = tmp_path / "tiny.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as raised:
        text.text_file(str(tmp_path), name="tiny", url=url)
    message = str(raised.value)
    assert "\n" not in message and expected.format(path=path) in message, message


def test_a_text_file_needs_a_name(tmp_path):
    with pytest.raises(ConfigError) as raised:
        text.text_file(str(tmp_path))
    assert raised.value.key == "dataset.name" and "is not set" in str(raised.value)
