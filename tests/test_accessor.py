"""``df.imagine``: jobs, show, reroll, gallery and export on history frames and their slices."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image as PILImage

import jupyter_imagine as ji
from jupyter_imagine.models import REROLL, Status


@pytest.fixture
def history(engine):
    """Three finished jobs: two APIFRAME grids (one upscaled) and a Blockade skybox."""
    grid = ji.imagine("a lighthouse at dusk", aspect_ratio="3:2").wait(60)
    up = grid.upscale(2).wait(60)
    sky = ji.imagine("a misty valley", provider="blockade").wait(60)
    return {"grid": grid, "up": up, "sky": sky, "df": ji.history()}


def test_refuses_a_frame_without_the_key_columns(engine):
    with pytest.raises(AttributeError, match=r"key columns 'provider' and 'id'.*'id'"):
        _ = pd.DataFrame({"provider": ["apiframe"], "prompt": ["x"]}).imagine
    with pytest.raises(AttributeError, match="history()"):
        _ = pd.DataFrame({"a": [1]}).imagine
    assert not hasattr(pd.DataFrame({"a": [1]}), "imagine")


def test_jobs_show_and_row_choice_on_slices(history):
    df = history["df"]  # the key (provider, id) as the index
    grid, up, sky = history["grid"], history["up"], history["sky"]
    ids = df.index.get_level_values("id").tolist()
    assert [j.id for j in df.imagine.jobs()] == ids
    assert df.imagine.jobs()[0] is ji.job(ids[0])  # the live, attached job
    apiframe = df.loc[["apiframe"]]
    assert {j.id for j in apiframe.imagine.jobs()} == {grid.id, up.id}
    flat = df.reset_index()  # the key as columns
    assert [j.id for j in flat.imagine.jobs()] == ids
    assert flat.imagine.show(grid.id) is grid and flat.imagine.show(f"blockade:{sky.id}") is sky
    succeeded = df.query("status == 'succeeded' and kind == 'upscale'")
    assert succeeded.imagine.show(0) is up
    assert df.imagine.show(("blockade", sky.id)) is sky  # index label: the key
    assert df.imagine.show(f"blockade:{sky.id}") is sky  # the key as text
    assert df.imagine.show(grid.id) is grid  # job id
    assert df.imagine.show(-1).id == ids[-1]
    keyed = flat.set_index(["provider", "id"])  # key as index levels again
    assert {j.id for j in keyed.imagine.jobs()} == {grid.id, up.id, sky.id}
    narrow = flat[["provider", "id"]]
    assert len(narrow.imagine.jobs()) == 3
    for bad, message in ((7, "out of range"), ("nope", "no row 'nope'"), (True, "position")):
        with pytest.raises(ji.InvalidRequest, match=message):
            df.imagine.show(bad)
    assert df.iloc[:0].imagine.jobs() == []


def test_reroll_with_and_without_the_reroll_button(history):
    df = history["df"].reset_index().set_index("id", drop=False)
    grid, sky = history["grid"], history["sky"]
    assert REROLL in grid.actions
    again = df.loc[[grid.id]].imagine.reroll(0, prompt="a lighthouse at night")
    assert again.kind == "reroll" and again.parent_id == grid.id and again.action == REROLL
    assert again.prompt == "a lighthouse at night"
    again.wait(60)
    assert REROLL not in sky.actions
    other = df.loc[[sky.id]].imagine.reroll(0)
    assert other.provider == "blockade" and other.parent_id == sky.id
    assert other.prompt == sky.prompt and other.kind == "skybox"
    other.wait(60)
    assert other.status is Status.SUCCEEDED
    lineage = ji.history().droplevel("provider")
    assert lineage.loc[other.id, "root_id"] == sky.id


def test_export_png_with_metadata_and_a_csv_sidecar(history, tmp_path, capfd):
    df = history["df"]
    capfd.readouterr()
    files = df.imagine.export(tmp_path / "out")
    last = capfd.readouterr().err.strip().split("\r")[-1]  # the progress, on stderr here
    assert last.startswith(f"export of {len(df)} jobs: 100%") and f"{len(df)}/{len(df)}" in last
    assert "failed" not in last
    grid, up, sky = history["grid"], history["up"], history["sky"]
    names = sorted(p.name for p in files)
    assert names == sorted(
        [f"apiframe_{grid.id}_{n}.png" for n in range(1, 5)]
        + [f"apiframe_{up.id}.png", f"blockade_{sky.id}.png"]
    )
    with PILImage.open(tmp_path / "out" / f"apiframe_{grid.id}_3.png") as img:
        assert img.text["prompt"] == "a lighthouse at dusk"
        meta = json.loads(img.text["parameters"])
        assert meta["id"] == grid.id and meta["params"] == {"aspect_ratio": "3:2"}
        assert meta["remote_id"] == grid.remote_id
        with PILImage.open(grid.images[2].path) as source:
            assert img.size == source.size
    sidecar = pd.read_csv(tmp_path / "out" / "history.csv")
    assert list(sidecar.columns[:2]) == ["provider", "id"]  # the key, as plain columns
    assert sidecar["id"].tolist() == df.index.get_level_values("id").tolist()
    assert sidecar["provider"].tolist() == df.index.get_level_values("provider").tolist()
    files_of = dict(zip(sidecar["id"], sidecar["files"].map(json.loads), strict=True))
    assert files_of[sky.id] == [f"blockade_{sky.id}.png"]
    assert json.loads(sidecar.set_index("id").loc[grid.id, "params"]) == {"aspect_ratio": "3:2"}


def test_export_jpg_of_a_slice_and_original_bytes(history, tmp_path):
    df = history["df"]
    up = history["up"]
    one = df[df["kind"] == "upscale"]
    files = one.imagine.export(tmp_path / "jpg", fmt="jpg")
    assert [p.name for p in files] == [f"apiframe_{up.id}.jpg"]
    with PILImage.open(files[0]) as img:
        assert img.format == "JPEG"
        assert img.getexif()[0x010E] == "a lighthouse at dusk"
    raw = one.imagine.export(tmp_path / "orig", fmt="original")
    assert raw[0].read_bytes()[:8] == open(up.images[0].path, "rb").read()[:8]
    assert len(pd.read_csv(tmp_path / "jpg" / "history.csv")) == 1
    with pytest.raises(ji.InvalidRequest, match="fmt must be one of"):
        one.imagine.export(tmp_path, fmt="bmp")


def test_export_to_somewhere_it_cannot_write_is_one_line(history, tmp_path):
    df = history["df"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ji.StorageError) as info:
        df.imagine.export(a_file, progress=False)
    assert str(info.value) == (f"cannot export to {a_file}: it is a file, not a folder; give a "
                               "folder you can write to, with room for the images")
    assert info.value.path == str(a_file)
    with pytest.raises(ji.StorageError, match="^cannot export to .*notes.txt/sub: Not a dir"):
        df.imagine.export(a_file / "sub", progress=False)
    assert a_file.read_text() == "not a folder"


def test_export_skips_images_that_were_never_downloaded(engine, tmp_path, capfd):
    job = ji.imagine("a slow tower sandbox:hang")
    df = ji.history()
    capfd.readouterr()
    assert df.imagine.export(tmp_path) == []
    last = capfd.readouterr().err.strip().split("\r")[-1]
    assert last.startswith("export of 1 job: 100%") and "1 failed" in last
    assert df.imagine.export(tmp_path, progress=False) == []
    assert capfd.readouterr().err == ""
    sidecar = pd.read_csv(tmp_path / "history.csv")
    assert json.loads(sidecar.loc[0, "files"]) == []
    job.cancel()


def test_parquet_sidecar_or_a_clear_message(history, tmp_path):
    df = history["df"]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ji.InvalidRequest, match="pyarrow or fastparquet"):
            df.imagine.export(tmp_path, sidecar="parquet")
    else:  # pragma: no cover - depends on the environment
        df.imagine.export(tmp_path, sidecar="parquet")
        assert len(pd.read_parquet(tmp_path / "history.parquet")) == len(df)


def test_gallery_over_the_rows(history):
    widgets = pytest.importorskip("jupyter_imagine.widgets")
    df = history["df"]
    gallery = df.loc[["apiframe"]].imagine.gallery()
    assert isinstance(gallery, widgets.Gallery)
    assert len(gallery) == 2
