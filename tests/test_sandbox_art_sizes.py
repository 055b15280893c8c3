"""jupyter_imagine.sandbox._art._sizes: grid-cell sizes from aspect ratios."""

from __future__ import annotations

import pytest

from jupyter_imagine.errors import InvalidRequest
from jupyter_imagine.sandbox._art._sizes import aspect_size


# ----------------------------------------------------------------------------- aspect_size
@pytest.mark.parametrize(
    ("ratio", "size"),
    [
        ("1:1", (512, 512)),
        ("3:2", (512, 342)),
        ("2:3", (342, 512)),
        ("16:9", (512, 288)),
        ("9:16", (288, 512)),
        ("4:1", (512, 128)),
        ("1:4", (128, 512)),
        (" 7 : 5 ", (512, 366)),
    ],
)
def test_aspect_size(ratio, size):
    assert aspect_size(ratio) == size
    assert all(side % 2 == 0 for side in size)


def test_aspect_size_defaults_and_long_side():
    assert aspect_size() == (512, 512)
    assert aspect_size("3:2", long_side=1024) == (1024, 682)


@pytest.mark.parametrize("bad", ["abc", "16-9", "16:", ":9", "0:1", "1:0", "", "1.5:1", None, 16])
def test_aspect_size_malformed(bad):
    with pytest.raises(InvalidRequest, match="aspect ratio must look like 16:9") as info:
        aspect_size(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", ["5:1", "1:5", "21:4"])
def test_aspect_size_out_of_range(bad):
    with pytest.raises(InvalidRequest, match="between 1:4 and 4:1"):
        aspect_size(bad)
