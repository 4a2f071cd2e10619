"""Every image as the annotator saw it (heatmapnet.imageio): the EXIF orientation applied (or
ignored, ``data.exif_orientation``) the same way in training, the readers' sizes, the pre-flight,
the mosaics, both predict backends and viz; and every pixel format read as 8-bit BGR or refused by
name, the same in the torch-free deploy path. Every file is written here, with PIL or OpenCV."""
import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from heatmapnet import imageio
from heatmapnet.config import load_config, value_problems
from heatmapnet.data.mosaic import MosaicPeople
from heatmapnet.data.pipelines import load_image
from heatmapnet.data.readers import image_size, read
from heatmapnet.data.records import Instance, Record
from heatmapnet.deploy.errors import DeployError
from heatmapnet.deploy.metadata import DeployMetadata
from heatmapnet.errors import DataError
from heatmapnet.imageio import ImageError, read_image

# -- the marker image ---------------------------------------------------------------------------
WIDTH, HEIGHT = 64, 40  # the image as displayed: wider than high
MARK = 16  # a red MARK x MARK square in the displayed image's top-left corner
RED, GREY = (0, 0, 255), (128, 128, 128)  # BGR

#: Derived by hand from the EXIF definitions (display = stored turned as the tag says): where the
#: marker must sit in the *stored* rows so that it shows in the displayed top-left corner, and
#: whether the stored image is high x wide as displayed ("same") or turned ("swapped").
#: 1 identity; 2 mirror left-right; 3 turn 180; 4 mirror top-bottom; 5 transpose (D[i, j] = S[j, i]);
#: 6 turn 90 clockwise (D[i, j] = S[H-1-j, i]); 7 transverse (D[i, j] = S[H-1-j, W-1-i]);
#: 8 turn 90 counter-clockwise (D[i, j] = S[j, W-1-i]).
STORED = {
    1: ("top-left", "same"), 2: ("top-right", "same"), 3: ("bottom-right", "same"), 4: ("bottom-left", "same"),
    5: ("top-left", "swapped"), 6: ("bottom-left", "swapped"), 7: ("bottom-right", "swapped"),
    8: ("top-right", "swapped"),
}


def _corner(image: np.ndarray, corner: str) -> np.ndarray:
    """The mean colour of the inner part of the MARK x MARK square at ``corner`` (away from JPEG ringing)."""
    rows = slice(3, MARK - 3) if corner.startswith("top") else slice(-MARK + 3, -3)
    cols = slice(3, MARK - 3) if corner.endswith("left") else slice(-MARK + 3, -3)
    return image[rows, cols].reshape(-1, 3).mean(axis=0)


def _marker_at(image: np.ndarray, corner: str) -> None:
    """The red marker is at ``corner`` and only there (the other three corners are grey)."""
    for other in ("top-left", "top-right", "bottom-left", "bottom-right"):
        expected = RED if other == corner else GREY
        np.testing.assert_allclose(_corner(image, other), expected, atol=6, err_msg=other)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # the Orientation tag
    return exif.tobytes()


def _stored_marker_image(orientation: int) -> np.ndarray:
    """The stored BGR pixels of a file tagged ``orientation`` whose displayed image has the marker
    top-left (from the hand-derived :data:`STORED`)."""
    corner, shape = STORED[orientation]
    height, width = (HEIGHT, WIDTH) if shape == "same" else (WIDTH, HEIGHT)
    image = np.full((height, width, 3), GREY, np.uint8)
    rows = slice(0, MARK) if corner.startswith("top") else slice(height - MARK, height)
    cols = slice(0, MARK) if corner.endswith("left") else slice(width - MARK, width)
    image[rows, cols] = RED
    return image


def _save(path, bgr: np.ndarray, orientation: int = 1, **options) -> str:
    """``bgr`` written by PIL (JPEG, PNG, WebP or TIFF by the suffix) with an EXIF Orientation tag."""
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(path, exif=_exif(orientation), **options)
    return str(path)


def _tagged_jpeg(folder, orientation: int) -> str:
    return _save(folder / f"o{orientation}.jpg", _stored_marker_image(orientation), orientation, quality=95)


# -- the eight orientations -------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_puts_the_marker_where_the_annotator_saw_it(tmp_path, orientation):
    path = _tagged_jpeg(tmp_path, orientation)
    assert imageio.exif_orientation(path) == orientation
    shown = read_image(path)  # the default: apply
    assert shown.shape == (HEIGHT, WIDTH, 3) and shown.dtype == np.uint8
    _marker_at(shown, "top-left")
    stored = read_image(path, "ignore")
    corner, shape = STORED[orientation]
    assert stored.shape[:2] == ((HEIGHT, WIDTH) if shape == "same" else (WIDTH, HEIGHT))
    _marker_at(stored, corner)
    # PIL's own reading of the tag (ImageOps.exif_transpose) agrees pixel for pixel
    with Image.open(path) as image:
        transposed = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[..., ::-1]
    assert np.abs(shown.astype(int) - transposed).max() <= 1
    # the readers' header sizes are the sizes as read under each convention
    assert image_size(path) == (WIDTH, HEIGHT)
    assert image_size(path, "ignore") == (stored.shape[1], stored.shape[0])


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".webp", {"lossless": True})])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_and_webp_orientation_tags_are_applied_too(tmp_path, suffix, options, orientation):
    path = _save(tmp_path / f"o{orientation}{suffix}", _stored_marker_image(orientation), orientation, **options)
    assert imageio.exif_orientation(path) == orientation
    expected = np.full((HEIGHT, WIDTH, 3), GREY, np.uint8)
    expected[:MARK, :MARK] = RED
    np.testing.assert_array_equal(read_image(path), expected)  # lossless: exact
    np.testing.assert_array_equal(read_image(path, "ignore"), _stored_marker_image(orientation))
    assert image_size(path) == (WIDTH, HEIGHT)


def test_a_tiff_with_an_orientation_tag_is_refused_by_name_and_one_without_is_read(tmp_path):
    turned = _save(tmp_path / "turned.tif", _stored_marker_image(6), 6)
    for convention in ("apply", "ignore"):
        with pytest.raises(ImageError, match=r"turned\.tif: a TIFF with EXIF orientation 6") as caught:
            read_image(turned, convention)
        assert "\n" not in str(caught.value)
    plain = _save(tmp_path / "plain.tif", _stored_marker_image(1), 1)
    _marker_at(read_image(plain), "top-left")


def test_a_missing_broken_or_out_of_range_tag_counts_as_identity(tmp_path):
    path = _save(tmp_path / "nine.jpg", _stored_marker_image(1), 9, quality=95)
    assert imageio.exif_orientation(path) == 1
    _marker_at(read_image(path), "top-left")
    Image.fromarray(_stored_marker_image(1)[..., ::-1]).save(tmp_path / "none.jpg", quality=95)
    assert imageio.exif_orientation(tmp_path / "none.jpg") == 1
    block = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05"  # an IFD that claims 5 entries and ends
    data = (tmp_path / "none.jpg").read_bytes()
    (tmp_path / "broken.jpg").write_bytes(data[:2] + b"\xff\xe1" + (len(block) + 2).to_bytes(2, "big") + block
                                          + data[2:])
    assert imageio.exif_orientation(tmp_path / "broken.jpg") == 1
    _marker_at(read_image(tmp_path / "broken.jpg"), "top-left")


def test_the_convention_is_a_config_value_with_apply_as_its_default():
    config = load_config("synthetic_faces")
    assert config.data.exif_orientation == "apply"
    assert value_problems(load_config("synthetic_faces", ["data.exif_orientation=ignore"])) == []
    wrong = load_config("synthetic_faces", ["data.exif_orientation=rotate"], validate=False)
    assert "data.exif_orientation='rotate': choose one of ['apply', 'ignore']" in value_problems(wrong)
    with pytest.raises(ValueError, match="exif_orientation='rotate'"):
        read_image("any.jpg", "rotate")


# -- training, readers, pre-flight, mosaics -------------------------------------------------------
def test_training_reads_the_displayed_image_and_checks_the_displayed_size(tmp_path):
    path = _tagged_jpeg(tmp_path, 6)
    shown = load_image(Record(path, WIDTH, HEIGHT, []))
    _marker_at(shown, "top-left")
    _marker_at(load_image(Record(path, HEIGHT, WIDTH, [], exif_orientation="ignore")), "bottom-left")
    with pytest.raises(DataError) as caught:  # annotated as stored, read as displayed
        load_image(Record(path, HEIGHT, WIDTH, []))
    assert str(caught.value) == (f"{path}: image is {WIDTH}x{HEIGHT} but its annotation says width={HEIGHT}, "
                                 f"height={WIDTH}; its EXIF orientation 6 is applied (data.exif_orientation=apply)")


def _coco(folder, file_name: str, size=None) -> str:
    """A COCO json of one image (with ``size`` declared, or none) and one 2-point instance."""
    image = {"id": 1, "file_name": file_name, **({"width": size[0], "height": size[1]} if size else {})}
    data = {"images": [image], "categories": [{"id": 1, "name": "thing", "keypoints": ["p", "q"]}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "num_keypoints": 2,
                             "keypoints": [10, 10, 2, 30, 20, 2], "bbox": [5, 5, 30, 25]}]}
    path = folder / f"{file_name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_readers_take_header_sizes_under_the_convention_and_records_carry_it(tmp_path):
    _tagged_jpeg(tmp_path, 8)
    (shown,) = read(_coco(tmp_path, "o8.jpg"))
    assert (shown.width, shown.height, shown.exif_orientation) == (WIDTH, HEIGHT, "apply")
    (stored,) = read(_coco(tmp_path, "o8.jpg"), exif_orientation="ignore")
    assert (stored.width, stored.height, stored.exif_orientation) == (HEIGHT, WIDTH, "ignore")
    _marker_at(load_image(shown), "top-left")
    _marker_at(load_image(stored), "top-right")


def _preflight(tmp_path, convention: str):
    from heatmapnet.preflight import run_preflight

    _tagged_jpeg(tmp_path, 6)
    _save(tmp_path / "plain.jpg", np.full((HEIGHT, WIDTH, 3), GREY, np.uint8), 1, quality=95)
    train = _coco(tmp_path, "o6.jpg", (WIDTH, HEIGHT))  # declared as displayed, as an annotation tool shows it
    val = _coco(tmp_path, "plain.jpg", (WIDTH, HEIGHT))
    overrides = ["data.scheme=coco", "data.train.source=files", "data.train.format=coco",
                 f"data.train.ann_file={train}", "data.val.source=files", "data.val.format=coco",
                 f"data.val.ann_file={val}", f"data.exif_orientation={convention}",
                 "model.backbone=mobilenetv3_small_050", "model.head_channels=16",
                 "data.input_size=[64,64]", "data.num_workers=0", "train.threads=1", "train.batch_size=4"]
    return run_preflight(load_config("synthetic_faces", overrides), tmp_path / "run", progress=False,
                         create_run_directory=False)


def test_the_preflight_checks_the_displayed_size_counts_turned_files_and_names_the_convention(tmp_path):
    report = _preflight(tmp_path, "apply")
    assert report.ok, report.problems
    assert report.train.oriented == 1 and report.val.oriented == 0
    summary = report.summary()
    assert "1 image files opened and decoded, 1 with an EXIF orientation other than 1" in summary
    assert ("  orientation data.exif_orientation=apply (EXIF orientation applied: images read as browsers and "
            "annotation tools show them); 1 image file(s) with an orientation other than 1") in summary


def test_under_ignore_the_same_declared_size_is_a_problem_naming_the_convention(tmp_path):
    report = _preflight(tmp_path, "ignore")
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert str(tmp_path / "o6.jpg") in problem and f"image is {HEIGHT}x{WIDTH}" in problem
    assert "its EXIF orientation 6 is ignored (data.exif_orientation=ignore)" in problem
    assert "orientation data.exif_orientation=ignore (EXIF orientation ignored" in report.summary()


def _blob_source(folder, name: str, orientation: int):
    """A person record (displayed 60 x 100, blobs at its joints) whose file is stored turned so
    that ``orientation`` shows it upright, written by PIL with the tag."""
    rows, cols = np.mgrid[0:100, 0:60].astype(np.float64)
    points = np.array([[20.0, 20.0], [40.0, 30.0], [30.0, 80.0], [15.0, 60.0]])
    shown = np.zeros((100, 60, 3))
    for n, (x, y) in enumerate(points):
        shown[..., n % 3] += 250.0 * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / 18.0)
    shown = np.round(shown).astype(np.uint8)
    stored = {1: shown, 6: np.rot90(shown, 1), 3: shown[::-1, ::-1]}[orientation]  # numpy's turns, not ours
    path = _save(folder / f"{name}.png", stored, orientation)
    return Record(path, 60, 100, [Instance(points, np.ones(4, bool), (5.0, 5.0, 50.0, 90.0))])


def test_mosaics_of_turned_files_are_the_mosaics_of_the_upright_ones(tmp_path):
    upright = [_blob_source(tmp_path, f"up{i}", 1) for i in range(4)]
    turned = [_blob_source(tmp_path, f"turned{i}", (6, 3)[i % 2]) for i in range(4)]
    settings = dict(people=(2, 3), canvas=(160, 160), heights=(0.2, 0.9), max_overlap=1.0, min_visible=2, plain=True)
    for a, b in zip(MosaicPeople(upright, 4, **settings), MosaicPeople(turned, 4, **settings)):
        np.testing.assert_array_equal(a.image, b.image)


# -- pixel formats ----------------------------------------------------------------------------------
def _is_16bit(path) -> bool:
    """The file really holds 16-bit samples (what OpenCV decodes undecorated)."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def _round257(values) -> np.ndarray:
    """16-bit values scaled to 8 bits by round(v / 257), in integer arithmetic: floor((2v + 257) / 514)."""
    return (2 * np.asarray(values, np.int64) + 257) // 514


LEVELS16 = np.array([0, 1, 128, 129, 257, 385, 386, 40000, 51400, 65279, 65535], np.uint16)


def _gray_png(path):
    gray = np.zeros((8, 10), np.uint8)
    gray[:, 5:] = 201
    Image.fromarray(gray, "L").save(path)
    return np.repeat(gray[..., None], 3, axis=2)


def _bilevel_png(path):
    bits = np.zeros((8, 16), bool)
    bits[:, ::2] = True
    Image.fromarray(bits).convert("1").save(path)
    return np.repeat(np.where(bits, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


def _gray16(path, rows):
    """A 16-bit grey image of ``rows`` rows of LEVELS16 (PIL mode I;16), the format from the suffix."""
    values = np.tile(LEVELS16, (rows, 1))
    Image.fromarray(values).save(path)
    assert _is_16bit(path)
    return np.repeat(_round257(values)[..., None], 3, axis=2)


def _gray16_png(path):
    return _gray16(path, 4)


def _rgb16_png(path):
    bgr = np.stack([np.tile(LEVELS16, (3, 1)), np.tile(LEVELS16[::-1], (3, 1)), np.full((3, len(LEVELS16)), 51657)],
                   axis=2).astype(np.uint16)
    assert cv2.imwrite(str(path), bgr) and _is_16bit(path)
    return _round257(bgr)


def _rgba_png(path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., :3] = (200, 50, 10)  # RGB
    rgba[:, 4:, :3] = (5, 250, 120)
    rgba[..., 3] = 255
    rgba[:3, :, 3] = 0  # fully transparent: the colour is kept, not composited
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba[..., 2::-1]


def _gray_alpha_png(path):
    la = np.zeros((6, 8, 2), np.uint8)
    la[..., 0], la[..., 1] = 90, 30
    Image.fromarray(la, "LA").save(path)
    return np.full((6, 8, 3), 90, np.uint8)


def _palette_png(path, transparent: bool = False):
    indices = np.zeros((6, 9), np.uint8)
    indices[:, 3:6], indices[:, 6:] = 1, 2
    image = Image.fromarray(indices, "P")
    palette = [(200, 50, 10), (0, 255, 0), (17, 34, 51)]  # RGB
    image.putpalette([v for colour in palette for v in colour])
    image.save(path, **({"transparency": 1} if transparent else {}))
    return np.array(palette, np.uint8)[indices][..., ::-1]


def _cmyk_jpeg(path):
    cmyk = [(0, 255, 255, 0), (0, 0, 0, 128), (100, 0, 0, 100), (50, 150, 200, 30)]
    image = np.zeros((16, 16 * len(cmyk), 4), np.uint8)
    for n, colour in enumerate(cmyk):
        image[:, 16 * n:16 * (n + 1)] = colour
    Image.fromarray(image, "CMYK").save(path, quality=100)
    with Image.open(path) as written:
        assert written.mode == "CMYK"
    # (255 - C)(255 - K) / 255 for R, likewise G from M and B from Y
    rgb = [[(255 - c) * (255 - k) / 255, (255 - m) * (255 - k) / 255, (255 - y) * (255 - k) / 255]
           for c, m, y, k in cmyk]
    return np.repeat(np.array(rgb)[None, :, ::-1], 16, axis=1).repeat(16, axis=0)


def _gray_jpeg(path):
    Image.new("L", (16, 16), 77).save(path, quality=100)
    return np.full((16, 16, 3), 77, np.uint8)


def _webp(path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4], rgb[:, 4:] = (200, 50, 10), (3, 99, 250)
    Image.fromarray(rgb).save(path, lossless=True)
    return rgb[..., ::-1]


def _webp_alpha(path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[...] = (40, 160, 220, 255)
    rgba[:, 4:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(path, lossless=True, exact=True)
    return rgba[..., 2::-1]


def _tiff_pages(path):
    pages = [Image.new("RGB", (10, 6), (10, 20, 30)), Image.new("RGB", (7, 9), (200, 100, 0))]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with Image.open(path) as image:
        assert image.n_frames == 2
    return np.full((6, 10, 3), (30, 20, 10), np.uint8)


def _gray16_tiff(path):
    return _gray16(path, 3)


def _animated_gif(path):
    frames = [Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("RGB", (8, 6), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return np.full((6, 8, 3), (0, 0, 255), np.uint8)


#: file name -> (writer returning the BGR the reading must give, tolerance in levels)
FORMATS = {
    "gray.png": (_gray_png, 0), "bilevel.png": (_bilevel_png, 0), "gray16.png": (_gray16_png, 0),
    "rgb16.png": (_rgb16_png, 0), "rgba.png": (_rgba_png, 0), "gray_alpha.png": (_gray_alpha_png, 0),
    "palette.png": (_palette_png, 0), "palette_transparent.png": (lambda p: _palette_png(p, True), 0),
    "cmyk.jpg": (_cmyk_jpeg, 2), "gray.jpg": (_gray_jpeg, 1), "lossless.webp": (_webp, 0),
    "alpha.webp": (_webp_alpha, 0), "pages.tif": (_tiff_pages, 0), "gray16.tif": (_gray16_tiff, 0),
    "animated.gif": (_animated_gif, 0),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_pixel_format_reads_as_the_8bit_bgr_it_was_written_with(tmp_path, name):
    writer, tolerance = FORMATS[name]
    expected = writer(tmp_path / name)
    pixels = read_image(tmp_path / name)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape, pixels.shape
    assert np.abs(pixels.astype(np.float64) - expected).max() <= tolerance, pixels[0, :4]
    assert image_size(tmp_path / name) == (expected.shape[1], expected.shape[0])


def _float_tiff(path):
    Image.fromarray(np.full((4, 5), 0.5, np.float32), "F").save(path)
    return "32-bit floating-point samples"


def _int32_tiff(path):
    Image.fromarray(np.full((4, 5), 70000, np.int32), "I").save(path)
    return "32-bit signed integer samples"


@pytest.mark.parametrize("writer", [_float_tiff, _int32_tiff])
def test_samples_heatmapnet_cannot_read_are_refused_in_one_line_naming_the_file(tmp_path, writer):
    path = tmp_path / f"{writer.__name__}.tif"
    phrase = writer(path)
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and phrase in message and "\n" not in message
    assert "heatmapnet reads images of 8- or 16-bit unsigned samples" in message


def test_empty_and_non_image_files_are_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"no image here " * 10)
    with pytest.raises(ImageError, match=r"empty\.png: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match=f"image file is corrupt or not an image: {tmp_path / 'text.png'}"):
        read_image(tmp_path / "text.png")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        read_image(tmp_path / "gone.png")


def test_the_deploy_reader_imports_neither_torch_nor_pil(tmp_path):
    path = _tagged_jpeg(tmp_path, 6)
    code = textwrap.dedent("""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "timm", "PIL", "omegaconf"):
                    raise ImportError("blocked for this test: " + name)

        sys.meta_path.insert(0, Block())
        from heatmapnet.deploy.sources import as_pixels  # the deploy path's reader: heatmapnet.imageio's
        from heatmapnet.errors import UserError  # what the deploy command reports in one line
        print(as_pixels(sys.argv[1]).shape, as_pixels(sys.argv[1], "ignore").shape)
        try:
            as_pixels(sys.argv[2])
        except UserError as error:
            print(error)
    """)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's heatmapnet
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"no image here " * 10)
    done = subprocess.run([sys.executable, "-c", code, path, str(broken)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [f"({HEIGHT}, {WIDTH}, 3) ({WIDTH}, {HEIGHT}, 3)",
                                           f"image file is corrupt or not an image: {broken}"]


# -- both predict backends and viz ----------------------------------------------------------------
def test_exported_metadata_carries_the_convention_and_old_files_mean_apply():
    from heatmapnet.metadata import load_scheme

    metadata = DeployMetadata(load_scheme("mtfl5"), "topdown", (64, 64), (0.5,) * 3, (0.2,) * 3, 4,
                              exif_orientation="ignore")
    props = metadata.to_props()
    assert props["exif_orientation"] == "ignore"
    assert DeployMetadata.from_props(props, "m.onnx").exif_orientation == "ignore"
    del props["exif_orientation"]
    assert DeployMetadata.from_props(props, "m.onnx").exif_orientation == "apply"
    with pytest.raises(DeployError, match="m.onnx: metadata key 'exif_orientation' is 'sideways'"):
        DeployMetadata.from_props({**props, "exif_orientation": "sideways"}, "m.onnx")


@pytest.fixture(scope="module")
def turned_and_upright(tmp_path_factory):
    """A textured image stored turned (orientation 6, PNG: lossless), its upright twin and its
    stored twin, both untagged."""
    from deploy_models import textured_image

    folder = tmp_path_factory.mktemp("turned")
    shown = textured_image(96, 72, 5)
    stored = np.ascontiguousarray(np.rot90(shown, 1))  # numpy's turn: orientation 6 shows it upright
    for name in ("turned", "upright", "stored"):
        (folder / name).mkdir()
    # one file name in three folders: viz titles its pictures with it
    return {"turned": _save(folder / "turned" / "img.png", stored, 6),
            "upright": _save(folder / "upright" / "img.png", shown),
            "stored": _save(folder / "stored" / "img.png", stored)}


def test_both_backends_and_viz_read_a_turned_image_as_training_did(turned_and_upright, tmp_path):
    from deploy_models import tiny_checkpoint
    from heatmapnet.deploy.runner import predict_images
    from heatmapnet.deploy.runtime import OnnxPredictor
    from heatmapnet.export import export_checkpoint
    from heatmapnet.predict import Predictor
    from heatmapnet.viz import visualize_image

    files = turned_and_upright
    applying = tiny_checkpoint(tmp_path / "apply.pt", "synthetic_faces")
    ignoring = tiny_checkpoint(tmp_path / "ignore.pt", "synthetic_faces", ["data.exif_orientation=ignore"])
    torch_apply, torch_ignore = Predictor(applying), Predictor(ignoring)
    assert (torch_apply.exif_orientation, torch_ignore.exif_orientation) == ("apply", "ignore")
    assert torch_apply(files["turned"]) == torch_apply(files["upright"])
    assert torch_ignore(files["turned"]) == torch_ignore(files["stored"])
    assert torch_apply(files["turned"]) != torch_apply(files["stored"])  # the turn matters to the model

    model = export_checkpoint(applying, tmp_path / "apply.onnx", dynamic_batch=True, check_images=0).path
    onnx = OnnxPredictor(model)
    assert onnx.exif_orientation == "apply"
    assert onnx(files["turned"]) == onnx(files["upright"])

    def listed(predictor) -> list:  # the predict command's own loop over image files
        predict_images(predictor, [files["turned"]], out=str(tmp_path / "out.json"))
        return json.loads((tmp_path / "out.json").read_text())[0]["predictions"]

    assert listed(onnx) == json.loads(json.dumps(onnx(files["upright"])))
    assert listed(torch_ignore) == json.loads(json.dumps(torch_ignore(files["stored"])))
    onnx.exif_orientation = "ignore"  # as an export of the ignoring checkpoint says
    assert listed(onnx) == json.loads(json.dumps(onnx(files["stored"])))

    drawn = [visualize_image(applying, files[name], tmp_path / name) for name in ("turned", "upright")]
    for turned, upright in zip(*drawn):
        np.testing.assert_array_equal(cv2.imread(turned), cv2.imread(upright))
