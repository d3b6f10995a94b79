"""Character-level next-token prediction on real text: the window of `seq_len` characters
before a position is the input, the character there the label. `lee_news` reads an
English news corpus that a pinned package ships (offline, checked by sha256),
`text_file` a UTF-8 text file of your own under data_dir (e.g. Tiny Shakespeare)."""

from __future__ import annotations

import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from optexp.data import Data, Split
from optexp.errors import ConfigError, UserError

# The Lee background corpus (Lee, Pincombe & Welsh 2005): 300 ABC news articles, 360 kB of
# English, one article a line, shipped as test data inside the gensim wheel. gensim is
# pinned in pyproject.toml; the checksum makes a different file an error, not a silently
# different problem.
LEE_PACKAGE, LEE_VERSION = "gensim", "4.4.0"
LEE_FILE = ("test", "test_data", "lee_background.cor")
LEE_SHA256 = "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb"


def lee_news(
    seq_len: int = 64,
    max_chars: int | None = None,
    stride: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Data:
    """Next character of the Lee news corpus (gensim's copy, see LEE_FILE): 360,082
    characters, 81 distinct (the classes). See `char_windows` for the knobs."""
    text = lee_text()
    return char_windows(text, seq_len, max_chars, stride, val_fraction, test_fraction)


def lee_text() -> str:
    """The corpus as gensim==LEE_VERSION ships it, or a one-line UserError saying what
    to install. The file is found without importing gensim (a second of numpy, scipy and
    smart_open imports, which importlib.resources.files would spend)."""
    install = f"pip install {LEE_PACKAGE}=={LEE_VERSION}"
    spec = importlib.util.find_spec(LEE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"dataset=lee_news reads its text from the {LEE_PACKAGE} package: {install}"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *LEE_FILE)
    try:
        content = path.read_bytes()
    except OSError as error:
        found = f"{LEE_PACKAGE} {_installed_version()}"
        raise UserError(
            f"dataset=lee_news: {found} has no {path} ({error.strerror or error}): {install}"
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != LEE_SHA256:
        raise UserError(
            f"dataset=lee_news: {path} has sha256 {digest}, not the {LEE_SHA256} of "
            f"{LEE_PACKAGE} {LEE_VERSION}'s copy: {install}"
        )
    return content.decode("utf-8")


def _installed_version() -> str:
    try:
        return metadata.version(LEE_PACKAGE)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def text_file(
    data_dir: str,
    name: str | None = None,
    url: str | None = None,
    seq_len: int = 64,
    max_chars: int | None = None,
    stride: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Data:
    """Next character of your UTF-8 text file `data_dir/<name>.txt`. Never downloaded: a
    missing file is a one-line UserError saying where to put it (and where it comes from,
    `url`). See `char_windows` for the other knobs."""
    if name is None or str(name).strip() == "":
        where = "the name of a UTF-8 text file data_dir/NAME.txt"
        raise ConfigError("dataset.name", name, where, "is not set")
    path = Path(data_dir) / f"{name}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(_missing_text(path, name, url)) from None
    except (OSError, UnicodeDecodeError) as error:
        detail = " ".join(str(error).split())  # one line: the CLI prints errors on one line
        raise UserError(f"dataset=text_file cannot read {path} as UTF-8 text ({detail})") from None
    return char_windows(text, seq_len, max_chars, stride, val_fraction, test_fraction)


def _missing_text(path: Path, name: str, url: str | None) -> str:
    """Where the file goes, for someone who fetches it by hand (optexp never downloads it)."""
    fetch = f"download {url} and save it as {path}" if url else f"put a UTF-8 text file at {path}"
    return (
        f"dataset=text_file: {name}.txt is not in data_dir={str(path.parent)!r}. "
        f"To provide it, {fetch}; or set data_dir and dataset.name to a text file of your own."
    )


def char_windows(
    text: str,
    seq_len: int,
    max_chars: int | None,
    stride: int,
    val_fraction: float,
    test_fraction: float,
) -> Data:
    """The first `max_chars` characters (null: all) as integer tokens, one class per
    distinct character (in code-point order), cut into train, val and test as contiguous
    blocks in that order, so no window of one split sees text of another. In each block a
    sample starts every `stride` characters: its input the `seq_len` tokens there (as
    floats, so any model takes them; the transformer embeds them as integers), its label
    the token after them."""
    text = text[:max_chars] if max_chars is not None else text
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    alphabet, tokens = np.unique(codes, return_inverse=True)
    if len(alphabet) < 2:  # one class: nothing to predict
        raise ConfigError(
            "dataset.max_chars", max_chars, "a text of 2 distinct characters at least",
            f"leaves {len(alphabet)} distinct characters",
        )  # fmt: skip
    tokens = torch.from_numpy(tokens.astype(np.int64))
    n_val, n_test = round(len(tokens) * val_fraction), round(len(tokens) * test_fraction)
    n_train = len(tokens) - n_val - n_test
    blocks = {"train": tokens[:n_train], "val": tokens[n_train : n_train + n_val]}
    if n_test:
        blocks["test"] = tokens[n_train + n_val :]
    _check_fits(blocks, seq_len, len(tokens))
    splits = {name: _windows(block, seq_len, stride) for name, block in blocks.items()}
    return Data(splits["train"], splits["val"], splits.get("test"), num_classes=len(alphabet))


def _check_fits(blocks: dict[str, Tensor], seq_len: int, total: int) -> None:
    """Every split needs one window at least: seq_len tokens and the one after them."""
    name, block = min(blocks.items(), key=lambda item: len(item[1]))
    if len(block) <= seq_len:
        raise ConfigError(
            "dataset.seq_len",
            seq_len,
            f"an integer below {len(block)}, or more characters in that split "
            f"(dataset.max_chars, dataset.{name}_fraction)",
            f"is too long for the {name} split ({len(block)} of {total} characters)",
        )


def _windows(block: Tensor, seq_len: int, stride: int) -> Split:
    """Inputs as overlapping views of one float copy of the block (`unfold`), so memory
    grows with the text, not with seq_len times it; batches copy only their rows."""
    x = block[:-1].float().unfold(0, seq_len, stride)
    y = block[seq_len::stride][: len(x)]
    return Split(x, y)
