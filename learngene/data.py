"""Task datasets: loading, validation and conversion to a network's input spec.

A `TaskDataset` holds uint8 images (N, H, W, C), integer labels (N,) and one name per class.
Every way of reading one (`.npz`, `.zip` of `class_name/*.png` folders) validates its input and
raises `DatasetError` with a message meant for the person who uploaded the file.

    ds = load_dataset("task.npz")
    x = to_input(ds.x, InputSpec(channels=1, size=32))   # float tensor (N, 1, 32, 32)
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class DatasetError(ValueError):
    """The input is not a usable task dataset; the message says why, for a user."""


@dataclass(frozen=True)
class InputSpec:
    """What a network eats: `channels` (1 or 3) square images of `size` pixels."""

    channels: int
    size: int

    def to_dict(self) -> dict:
        return {"channels": self.channels, "size": self.size}


@dataclass
class Limits:
    """Bounds on what a reader accepts (the service tightens them per request)."""

    max_samples: int = 200_000
    max_side: int = 1024  # images larger than this on either side are refused
    max_zip_members: int = 100_000
    max_zip_uncompressed: int = 2 * 1024**3  # total inflated bytes, for .npz and .zip alike
    max_zip_ratio: float = 200.0  # a member compressed more than this is treated as a bomb


RATIO_FLOOR = 1 << 20  # members inflating to less than this are too small to be a bomb, whatever their ratio


def check_archive(zf: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """Refuse an archive before inflating anything: member count, total inflated size, compression ratio.

    The sizes are those the archive declares; `zipfile` never inflates a member past its declared size,
    so they bound what reading it can cost.
    """
    members = [m for m in zf.infolist() if not m.is_dir()]
    if len(members) > limits.max_zip_members:
        raise DatasetError(f"the archive has {len(members)} files, more than the limit of {limits.max_zip_members}")
    total = sum(m.file_size for m in members)
    if total > limits.max_zip_uncompressed:
        raise DatasetError(f"the archive would unpack to {total} bytes, more than {limits.max_zip_uncompressed}")
    for m in members:
        if m.file_size > RATIO_FLOOR and m.file_size / max(m.compress_size, 1) > limits.max_zip_ratio:
            raise DatasetError(f"archive member {m.filename!r} is compressed "
                               f"{m.file_size // max(m.compress_size, 1)}:1, a likely zip bomb")
    return members


def npy_header(zf: zipfile.ZipFile, member: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an `.npy` member, read from its header alone; refused if the header promises more
    bytes than the member holds, or objects (which only pickle could read)."""
    fmt = np.lib.format
    try:
        with zf.open(member) as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _fortran, dtype = read(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{member.filename!r} is not a readable .npy array: {e}") from e
    if dtype.hasobject:
        raise DatasetError("the .npz holds pickled objects, which are refused; use numeric or string arrays")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > member.file_size:
        raise DatasetError(f"{member.filename!r} declares {nbytes} bytes of data but holds at most "
                           f"{member.file_size}")
    return tuple(shape), dtype


def check_npz(zf: zipfile.ZipFile, limits: Limits) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every check an `.npz` can pass without inflating its arrays: the archive's sizes, each array's
    header, and the image array's shape and type against the limits."""
    check_archive(zf, limits)
    headers = {m.filename[:-4]: npy_header(zf, m) for m in zf.infolist() if m.filename.endswith(".npy")}
    if "x" in headers:
        shape, dtype = headers["x"]
        if dtype != np.uint8 and dtype.kind != "f":  # floats get the full check (NaN or type) once read
            raise DatasetError(f"images x must be uint8 (0..255), got {dtype}")
        if len(shape) not in (3, 4):
            raise DatasetError(f"images x must have rank 3 (N,H,W) or 4 (N,H,W,C), got shape {shape}")
        if shape[0] > limits.max_samples:
            raise DatasetError(f"too many images: {shape[0]} > {limits.max_samples}")
        if shape[1] > limits.max_side or shape[2] > limits.max_side:
            raise DatasetError(f"images of {shape[1]}x{shape[2]} exceed the limit of {limits.max_side} pixels a side")
    return headers


@dataclass
class TaskDataset:
    """Labelled images: x uint8 (N, H, W, C), y int64 (N,) in 0..len(class_names)-1."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.dtype != np.uint8:
            raise DatasetError(f"images must be uint8, got {x.dtype}")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise DatasetError(f"images must be (N,H,W) or (N,H,W,C) with C in 1,3,4; got shape {x.shape}")
        if x.shape[-1] == 4:
            x = x[..., :3]  # drop alpha
        if len(x) == 0:
            raise DatasetError("the dataset is empty")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"labels must be one per image: {len(x)} images, labels of shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"labels must be integers here, got {y.dtype}")
        y = y.astype(np.int64)
        if not self.class_names:
            self.class_names = [str(c) for c in range(int(y.max()) + 1)]
        if y.min() < 0 or y.max() >= len(self.class_names):
            raise DatasetError(f"labels must lie in 0..{len(self.class_names) - 1}")
        self.x, self.y = np.ascontiguousarray(x), y
        self.class_names = [str(c) for c in self.class_names]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.x.shape[-1])

    @property
    def size(self) -> int:
        return int(max(self.x.shape[1], self.x.shape[2]))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.num_classes)

    def subset(self, index: np.ndarray) -> "TaskDataset":
        """The samples at `index`, keeping only classes that still occur (relabelled in order)."""
        x, y = self.x[index], self.y[index]
        present = np.unique(y)
        remap = np.full(self.num_classes, -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        return TaskDataset(x, remap[y], [self.class_names[c] for c in present])

    def require(self, min_classes: int = 2, min_per_class: int = 1) -> "TaskDataset":
        """Raise DatasetError unless there are enough classes and samples of each."""
        counts = self.class_counts()
        present = int((counts > 0).sum())
        if present < min_classes:
            raise DatasetError(f"need at least {min_classes} classes, got {present}")
        low = [self.class_names[c] for c in np.flatnonzero(counts < min_per_class)]
        if low:
            raise DatasetError(
                f"need at least {min_per_class} samples per class; too few for {', '.join(low[:5])}"
                + (" …" if len(low) > 5 else "")
            )
        return self


def _labels_from(raw_y: np.ndarray, class_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Integer or string labels → (integer labels, class names)."""
    if raw_y.dtype.kind in "US":
        names = sorted({str(v) for v in raw_y.tolist()})
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[str(v)] for v in raw_y.tolist()], dtype=np.int64), names
    if not np.issubdtype(raw_y.dtype, np.integer):
        if np.issubdtype(raw_y.dtype, np.floating) and np.all(np.isfinite(raw_y)) and np.all(raw_y == np.round(raw_y)):
            raw_y = raw_y.astype(np.int64)
        else:
            raise DatasetError(f"labels y must be integers or strings, got {raw_y.dtype}")
    if len(raw_y) and raw_y.min() < 0:
        raise DatasetError("integer labels must be non-negative")
    if class_names is not None:
        if len(raw_y) and raw_y.max() >= len(class_names):
            raise DatasetError(f"label {int(raw_y.max())} has no entry in class_names ({len(class_names)} names)")
        return raw_y.astype(np.int64), list(class_names)
    # Integer labels without names: keep only the ids that occur, named by their value.
    values = np.unique(raw_y)
    remap = {int(v): i for i, v in enumerate(values)}
    return np.array([remap[int(v)] for v in raw_y], dtype=np.int64), [str(int(v)) for v in values]


def load_npz(source: bytes | str | Path, limits: Limits | None = None) -> TaskDataset:
    """Read an `.npz` with `x` (N,H,W[,C]) uint8, `y` (N,) labels and optional `class_names`.

    Object arrays are refused (`allow_pickle=False`): nothing from a client is unpickled.
    """
    limits = limits or Limits()
    stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    try:
        with stream:
            with zipfile.ZipFile(stream) as zf:
                check_npz(zf, limits)
            stream.seek(0)
            archive = np.load(stream, allow_pickle=False)
            if "x" not in archive.files:
                raise DatasetError("the .npz has no array named 'x' (the images)")
            x = archive["x"]
            raw_y = archive["y"] if "y" in archive.files else None
            names = archive["class_names"] if "class_names" in archive.files else None
            archive.close()
    except DatasetError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DatasetError("the .npz holds pickled objects, which are refused; use numeric or string arrays") from e
        raise DatasetError(f"not a readable .npz file: {e}") from e
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DatasetError(f"not a readable .npz file: {e}") from e
    if raw_y is None:
        raise DatasetError("the .npz has no array named 'y' (the labels)")
    _check_images(x, limits)
    class_names = [str(n) for n in names.tolist()] if names is not None else None
    if raw_y.ndim != 1 or len(raw_y) != len(x):
        raise DatasetError(f"x has {len(x)} images but y has shape {raw_y.shape}; they must match")
    y, class_names = _labels_from(raw_y, class_names)
    return TaskDataset(x, y, class_names)


def load_images_npz(source: bytes, limits: Limits | None = None) -> np.ndarray:
    """Read unlabelled images (`x` only) from an `.npz`, for prediction."""
    limits = limits or Limits()
    try:
        with zipfile.ZipFile(io.BytesIO(source)) as zf:
            check_npz(zf, limits)
        with np.load(io.BytesIO(source), allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise DatasetError("the .npz has no array named 'x' (the images)")
            x = archive["x"]
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is the client's file
        raise DatasetError(f"not a readable .npz file: {e}") from e
    _check_images(x, limits)
    return TaskDataset(x, np.zeros(len(x), dtype=np.int64), ["_"]).x


def _check_images(x: np.ndarray, limits: Limits) -> None:
    if x.dtype == object:
        raise DatasetError("images must be uint8, got object")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise DatasetError("images contain NaN or infinite values")
    if x.dtype != np.uint8:
        raise DatasetError(f"images x must be uint8 (0..255), got {x.dtype}")
    if x.ndim not in (3, 4):
        raise DatasetError(f"images x must have rank 3 (N,H,W) or 4 (N,H,W,C), got shape {x.shape}")
    if len(x) > limits.max_samples:
        raise DatasetError(f"too many images: {len(x)} > {limits.max_samples}")
    if x.shape[1] > limits.max_side or x.shape[2] > limits.max_side:
        raise DatasetError(f"images of {x.shape[1]}x{x.shape[2]} exceed the limit of {limits.max_side} pixels a side")


def decode_image(data: bytes, limits: Limits | None = None) -> np.ndarray:
    """One encoded image (PNG, JPEG, …) → uint8 (H, W, C) with C in 1 or 3."""
    from PIL import Image, UnidentifiedImageError

    limits = limits or Limits()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width > limits.max_side or im.height > limits.max_side:
                raise DatasetError(
                    f"an image of {im.width}x{im.height} exceeds the limit of {limits.max_side} pixels a side"
                )
            im = im.convert("L") if im.mode in ("1", "L", "I", "I;16", "F", "LA") else im.convert("RGB")
            arr = np.array(im, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"not an image: {e}") from e
    except Image.DecompressionBombError as e:
        raise DatasetError(f"image too large: {e}") from e
    return arr[..., None] if arr.ndim == 2 else arr


def load_zip(source: bytes | str | Path, limits: Limits | None = None) -> TaskDataset:
    """Read a `.zip` of `class_name/image.png` entries (one folder level per class, any prefix above).

    Guards against zip bombs (member count, total size, compression ratio) and paths that escape.
    """
    limits = limits or Limits()
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"not a readable .zip file: {e}") from e
    with zf:
        members = check_archive(zf, limits)
        images: list[np.ndarray] = []
        labels: list[str] = []
        for m in members:
            path = PurePosixPath(m.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or m.filename.startswith("/"):
                raise DatasetError(f"zip member path escapes the archive: {m.filename!r}")
            if any(p.startswith(".") or p == "__MACOSX" for p in path.parts):
                continue  # hidden files and macOS resource forks
            if m.compress_size and m.file_size / max(m.compress_size, 1) > limits.max_zip_ratio:
                raise DatasetError(f"zip member {m.filename!r} is compressed {m.file_size // max(m.compress_size, 1)}:1, a likely zip bomb")
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(f"zip member {m.filename!r} is not an image (expected {', '.join(IMAGE_SUFFIXES)})")
            if len(path.parts) < 2:
                raise DatasetError(f"zip member {m.filename!r} is not inside a class folder (class_name/image.png)")
            images.append(decode_image(zf.read(m), limits))
            labels.append(path.parts[-2])
    if not images:
        raise DatasetError("the zip holds no images")
    return _dataset_from_images(images, labels)


def _dataset_from_images(images: list[np.ndarray], labels: list[str]) -> TaskDataset:
    """Stack images of possibly different sizes and channel counts into one uint8 array."""
    channels = 3 if any(im.shape[-1] == 3 for im in images) else 1
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    out = np.zeros((len(images), h, w, channels), dtype=np.uint8)
    for i, im in enumerate(images):
        if im.shape[-1] != channels:
            im = np.repeat(im, channels, axis=-1)
        if im.shape[:2] != (h, w):
            im = _resize_uint8(im, h, w)
        out[i] = im
    y, names = _labels_from(np.array(labels), None)
    return TaskDataset(out, y, names)


def _resize_uint8(im: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(im).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def load_dataset(source: bytes | str | Path, filename: str | None = None, limits: Limits | None = None) -> TaskDataset:
    """Read a dataset from `.npz` or `.zip` bytes or path; the format is sniffed from the content.

    A `.npz` is itself a zip, so `.npy` members tell them apart.
    """
    if isinstance(source, (str, Path)):  # a file is read member by member, never whole
        with open(source, "rb") as f:
            head = f.read(4)
    else:
        head = source[:4]
    if not head:
        raise DatasetError("the upload is empty")
    if head != b"PK\x03\x04" and head != b"PK\x05\x06":
        hint = f" ({filename})" if filename else ""
        raise DatasetError(f"unsupported file{hint}: expected an .npz or a .zip of class folders")
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile as e:
        raise DatasetError(f"not a readable .npz or .zip file: {e}") from e
    if any(n.endswith(".npy") for n in names):
        return load_npz(source, limits)
    return load_zip(source, limits)


def save_npz(ds: TaskDataset, path: str | Path | io.BytesIO) -> None:
    """Write `x`, `y` and `class_names` (as a unicode array, never pickled)."""
    np.savez_compressed(path, x=ds.x, y=ds.y, class_names=np.array(ds.class_names, dtype=np.str_))


def npz_bytes(ds: TaskDataset) -> bytes:
    buf = io.BytesIO()
    save_npz(ds, buf)
    return buf.getvalue()


def to_input(x: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 images (N, H, W, C) → float tensor (N, spec.channels, spec.size, spec.size).

    Channels: RGB → gray by luminance, gray → RGB by repetition. Size: the image is fitted into the
    square keeping its aspect ratio (padded with its border's median value), then resized with
    antialiasing. Values are scaled to [-1, 1]; per-dataset statistics are left to BatchNorm so the
    same conversion works for any domain.
    """
    if x.ndim == 3:
        x = x[..., None]
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()  # (N, C, H, W)
    c = t.shape[1]
    if c == 3 and spec.channels == 1:
        t = (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif c == 1 and spec.channels == 3:
        t = t.expand(-1, 3, -1, -1)
    elif c != spec.channels:
        raise DatasetError(f"cannot convert {c}-channel images to {spec.channels} channels")
    h, w = t.shape[-2:]
    if h != w:
        side = max(h, w)
        border = torch.cat([t[:, :, 0, :], t[:, :, -1, :], t[:, :, :, 0], t[:, :, :, -1]], dim=-1)
        fill = border.median(dim=-1).values[..., None, None]  # (N, C, 1, 1)
        canvas = fill.expand(-1, -1, side, side).clone()
        top, left = (side - h) // 2, (side - w) // 2
        canvas[:, :, top : top + h, left : left + w] = t
        t = canvas
    if t.shape[-1] != spec.size:
        t = F.interpolate(t, size=(spec.size, spec.size), mode="bilinear", align_corners=False, antialias=True)
    return t / 127.5 - 1.0
