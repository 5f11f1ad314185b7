import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from learngene import DatasetError, InputSpec, Limits, TaskDataset, load_dataset, npz_bytes, to_input


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_npz_round_trip_keeps_names(task_factory):
    ds = task_factory(["alpha", "beta", "gamma"], per_class=3)
    back = load_dataset(npz_bytes(ds))
    assert back.class_names == ["alpha", "beta", "gamma"]
    assert np.array_equal(back.x, ds.x) and np.array_equal(back.y, ds.y)


def test_string_labels_become_sorted_class_names():
    x = np.zeros((4, 8, 8), np.uint8)
    ds = load_dataset(_npz(x=x, y=np.array(["cat", "dog", "cat", "ant"])))
    assert ds.class_names == ["ant", "cat", "dog"]
    assert ds.y.tolist() == [1, 2, 1, 0]
    assert ds.x.shape == (4, 8, 8, 1)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 8, 8), np.float32), "y": np.arange(3)}, "uint8"),
    ({"x": np.zeros((3, 8), np.uint8), "y": np.arange(3)}, "rank"),
    ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.arange(2)}, "must match"),
    ({"x": np.full((3, 8, 8), np.nan, np.float32), "y": np.arange(3)}, "NaN"),
    ({"y": np.arange(3)}, "'x'"),
    ({"x": np.zeros((3, 8, 8), np.uint8)}, "'y'"),
])
def test_bad_npz_raises_a_readable_error(arrays, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(_npz(**arrays))


def test_pickled_objects_are_refused():
    x = np.empty(2, dtype=object)
    x[0], x[1] = {"a": 1}, [1]
    with pytest.raises(DatasetError, match="pickle"):
        load_dataset(_npz(x=x, y=np.arange(2)))


def test_require_checks_classes_and_samples(task_factory):
    with pytest.raises(DatasetError, match="at least 2 classes"):
        task_factory(["only"], per_class=3).require(min_classes=2)
    with pytest.raises(DatasetError, match="per class"):
        task_factory(["a", "b"], per_class=2).require(min_per_class=5)


def test_zip_of_class_folders():
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as zf:
        for cls in ["circle", "square"]:
            for i in range(3):
                zf.writestr(f"data/{cls}/{i}.png", _png(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)))
        zf.writestr("__MACOSX/._junk", b"ignored")
    ds = load_dataset(buf.getvalue())
    assert ds.class_names == ["circle", "square"]
    assert ds.x.shape == (6, 10, 12, 3) and ds.class_counts().tolist() == [3, 3]


@pytest.mark.parametrize("name, content, message", [
    ("../evil/0.png", None, "escapes"),
    ("cls/readme.txt", b"hello", "not an image"),
    ("cls/0.png", b"not really a png", "not an image"),
])
def test_bad_zip_members(name, content, message):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/0.png", _png(np.zeros((4, 4), np.uint8)))
        zf.writestr(name, content if content is not None else _png(np.zeros((4, 4), np.uint8)))
    with pytest.raises(DatasetError, match=message):
        load_dataset(buf.getvalue())


def test_zip_bomb_ratio_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cls/0.png", b"\0" * 5_000_000)
    with pytest.raises(DatasetError, match="bomb"):
        load_dataset(buf.getvalue())


def test_oversized_images_are_refused():
    with pytest.raises(DatasetError, match="exceed"):
        load_dataset(_npz(x=np.zeros((2, 64, 64), np.uint8), y=np.arange(2)), limits=Limits(max_side=32))


def test_not_a_dataset_at_all():
    with pytest.raises(DatasetError, match="expected an .npz"):
        load_dataset(b"hello world")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(b"")


def test_to_input_converts_channels_and_size():
    rgb = np.zeros((2, 20, 10, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    t = to_input(rgb, InputSpec(channels=1, size=16))
    assert t.shape == (2, 1, 16, 16)
    assert t.min() >= -1 and t.max() <= 1
    # The red strip sits in the middle of the padded square; the padding takes the border's value.
    assert torch.isclose(t[0, 0, 8, 8], torch.tensor(0.299 * 255 / 127.5 - 1), atol=1e-2)
    gray = np.full((1, 8, 8, 1), 255, np.uint8)
    assert to_input(gray, InputSpec(3, 8)).shape == (1, 3, 8, 8)
    assert torch.allclose(to_input(gray, InputSpec(3, 8)), torch.ones(1, 3, 8, 8))


def test_dataset_rejects_wrong_label_range():
    with pytest.raises(DatasetError):
        TaskDataset(np.zeros((2, 4, 4), np.uint8), np.array([0, 5]), ["a", "b"])
