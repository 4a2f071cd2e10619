#!/usr/bin/env python
"""Write a NEW 14-point face scheme, taken from ytf68's 68 iBUG points, as COCO-keypoint jsons
for a small-data fine-tuning experiment: ``python tools/make_face14.py [--out runs/face14]``.

The faces are the ones ``runs/ytf68_val_nomirror`` never trained on: records 2949: of
ytf68/train (52 identities, Richard_Branson .. the last; configs/ytf68_val.yaml trained on
records 0:2949, 295 identities). They are split BY IDENTITY (identity = the file name before its
last ``_NN``; the .pts reader sorts the files by name, so each identity's images are contiguous):

* the first ``--train-identities`` (36) identities, less the last ``--val-identities`` (4) of them:
  ``train.json``, their ytf68/train images;
* those last 4 of the 36: ``val.json`` (their ytf68/train images), for choosing anything;
* the remaining 16 identities: ``test.json``, their ytf68/train images AND their ytf68/test
  images (ytf68/test holds images of every identity; its file names repeat ytf68/train's, but
  the images are other frames of the same videos).

The ytf68/test images of the train and val identities are left out of every split.

Each face is one COCO annotation: the 14 points (0-based pixel centres, as heatmapnet's .pts
reader gives them: the .pts value minus 1; all visible, v=2) and, as ``bbox``, the box the .pts
reader frames the face with (the tight box of all 68 points), so top-down crops frame the faces
as the ytf68 model saw them. ``file_name`` is relative to the ytf68 folder (``train/NAME.jpg``,
``test/NAME.jpg``): pass ``img_dir: ${data_root:}/ytf68`` for every split.

Also written: ``face14.yaml``, the same scheme as a heatmapnet scheme file (names, flip pairs as
heatmapnet derives them from the names, skeleton, and the inter-ocular NME normaliser, the outer
eye corners). ``data.scheme: coco`` takes names and flip pairs from the json's category but has no
way to name NME points, so it is scored as a body (PCK, OKS AP); ``configs/face14.yaml`` uses the
scheme file to get inter-ocular NME.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

# the checkout's heatmapnet, whether or not one is installed (run as a script, tools/ is on the path)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: The 14 points: a new name (sides are the SUBJECT's, as in datasets/ibug68.yaml: right_* is on
#: the image left of a frontal face) and the 0-based ibug68 index it is taken from.
POINTS = (
    ("right_brow_outer", 17),     # right_eyebrow_0: outer end of the subject's right brow (image left)
    ("left_brow_outer", 26),      # left_eyebrow_4
    ("right_eye_outer", 36),      # right_eye_0: outer corner of the subject's right eye
    ("right_eye_inner", 39),      # right_eye_3
    ("left_eye_inner", 42),       # left_eye_0
    ("left_eye_outer", 45),       # left_eye_3
    ("nose_tip", 30),             # nose_bridge_3
    ("right_nostril", 31),        # nose_base_0: image-left end of the nose base
    ("left_nostril", 35),         # nose_base_4: image-right end
    ("right_mouth_corner", 48),   # mouth_outer_0: image-left mouth corner
    ("left_mouth_corner", 54),    # mouth_outer_6: image-right mouth corner
    ("upper_lip_top", 51),        # mouth_outer_3: top of the upper lip, on the axis
    ("lower_lip_bottom", 57),     # mouth_outer_9: bottom of the lower lip, on the axis
    ("chin", 8),                  # jaw_8
)
NAMES = tuple(name for name, _ in POINTS)
IBUG_INDEX = tuple(index for _, index in POINTS)
#: Inter-ocular NME, as ibug68's: the outer eye corners (ibug 36 and 45).
INTEROCULAR = ("right_eye_outer", "left_eye_outer")
SKELETON = (
    ("right_brow_outer", "right_eye_outer"), ("right_eye_outer", "right_eye_inner"),
    ("left_eye_inner", "left_eye_outer"), ("left_eye_outer", "left_brow_outer"),
    ("right_nostril", "nose_tip"), ("nose_tip", "left_nostril"),
    ("right_mouth_corner", "upper_lip_top"), ("upper_lip_top", "left_mouth_corner"),
    ("left_mouth_corner", "lower_lip_bottom"), ("lower_lip_bottom", "right_mouth_corner"),
    ("lower_lip_bottom", "chin"),
)
#: OKS sigma of every point: what heatmapnet assumes for a COCO category that is not COCO's 17.
SIGMA = 0.025
#: The first ytf68/train record runs/ytf68_val_nomirror did not train on (configs/ytf68_val.yaml).
FIRST_HELD_OUT = 2949


def identity_of(image_path) -> str:
    """``Richard_Branson_10.jpg`` -> ``Richard_Branson``."""
    stem = Path(image_path).stem
    match = re.fullmatch(r"(.+)_(\d+)", stem)
    if match is None:
        raise ValueError(f"{image_path}: expected a file name NAME_NN")
    return match.group(1)


def in_order(identities):
    """The distinct identities, in the order first met."""
    return list(dict.fromkeys(identities))


def check_contiguous(records, where: str) -> None:
    seen, last = set(), None
    for record in records:
        name = identity_of(record.image_path)
        if name != last and name in seen:
            raise ValueError(f"{where}: identity {name} is not contiguous (at {record.image_path})")
        seen.add(name)
        last = name


def scheme_dict() -> dict:
    """face14 as a heatmapnet scheme file's fields; flip pairs as heatmapnet derives them from the
    names (:func:`heatmapnet.metadata.infer_flip_pairs`, the ``data.scheme: coco`` path)."""
    from heatmapnet.metadata import infer_flip_pairs

    return {
        "name": "face14",
        "sides": "person",
        "keypoints": list(NAMES),
        "flip_pairs": [[NAMES[a], NAMES[b]] for a, b in infer_flip_pairs(NAMES)],
        "skeleton": [list(edge) for edge in SKELETON],
        "oks_sigmas": [SIGMA] * len(NAMES),
        "nme_normalisation": {"interocular": list(INTEROCULAR)},
        "notes": ["written by tools/make_face14.py: 14 of ytf68's 68 iBUG points, renamed (ibug68 index of each: "
                  + ", ".join(f"{n}={i}" for n, i in POINTS) + ")"],
    }


def coco_json(entries, description: str) -> dict:
    """``entries``: (folder, record index, record) of one split -> a COCO keypoints json."""
    index = {name: n + 1 for n, name in enumerate(NAMES)}
    images, annotations = [], []
    for n, (folder, record_index, record) in enumerate(entries):
        (instance,) = record.instances
        points = instance.keypoints[list(IBUG_INDEX)]
        triples = [[float(x), float(y), 2] for x, y in points]
        x, y, w, h = (float(v) for v in instance.bbox)
        images.append({"id": n + 1, "file_name": f"{folder}/{Path(record.image_path).name}",
                       "width": int(record.width), "height": int(record.height),
                       "identity": identity_of(record.image_path), "ytf68_record": f"{folder}[{record_index}]"})
        annotations.append({"id": n + 1, "image_id": n + 1, "category_id": 1, "iscrowd": 0,
                            "num_keypoints": len(NAMES), "keypoints": [v for t in triples for v in t],
                            "bbox": [x, y, w, h], "area": w * h})
    return {"info": {"description": description,
                     "img_dir": "file_name is relative to the ytf68 folder (${data_root:}/ytf68)",
                     "coordinates": "0-based pixel centres: the .pts values minus 1",
                     "bbox": "the tight box of all 68 .pts points (heatmapnet's .pts reader's box)"},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "face14", "supercategory": "face", "keypoints": list(NAMES),
                            "skeleton": [[index[a], index[b]] for a, b in SKELETON]}]}


def make_splits(ytf68: Path, train_identities: int = 36, val_identities: int = 4,
                first_held_out: int = FIRST_HELD_OUT) -> dict:
    """{split: [(folder, record index, record), ...]} and the identities of each split."""
    from heatmapnet.data import read

    train_records = read(ytf68 / "train", format="pts")
    test_records = read(ytf68 / "test", format="pts")
    check_contiguous(train_records, "ytf68/train")
    seen = set(map(identity_of, (r.image_path for r in train_records[:first_held_out])))
    held = in_order(identity_of(r.image_path) for r in train_records[first_held_out:])
    if seen & set(held):
        raise ValueError(f"ytf68/train records {first_held_out}: share identities with records 0:{first_held_out}: "
                         f"{sorted(seen & set(held))[:3]}")
    if not 0 < val_identities < train_identities < len(held):
        raise ValueError(f"need 0 < --val-identities < --train-identities < {len(held)} (the held-out identities)")
    groups = {"train": held[:train_identities - val_identities],
              "val": held[train_identities - val_identities:train_identities],
              "test": held[train_identities:]}
    splits = {}
    for split, names in groups.items():
        names = set(names)
        entries = [("train", i, r) for i, r in enumerate(train_records)
                   if i >= first_held_out and identity_of(r.image_path) in names]
        if split == "test":
            entries += [("test", i, r) for i, r in enumerate(test_records) if identity_of(r.image_path) in names]
        splits[split] = entries
    return {"splits": splits, "identities": groups, "num_pretrained_identities": len(seen)}


def main(argv=None) -> int:
    from heatmapnet.config import data_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the folder holding ytf68/ (default: heatmapnet's data root, $HEATMAPNET_DATA or "
                             "../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("runs/face14"), help="output folder (default: runs/face14)")
    parser.add_argument("--train-identities", type=int, default=36,
                        help="held-out identities for training and validation, the first ones (default 36)")
    parser.add_argument("--val-identities", type=int, default=4,
                        help="of those, the last ones held out as the validation split (default 4)")
    args = parser.parse_args(argv)
    ytf68 = (args.data_root or data_root()) / "ytf68"
    made = make_splits(ytf68, args.train_identities, args.val_identities)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"face14 from {ytf68}: ytf68/train records {FIRST_HELD_OUT}: "
          f"({sum(len(v) for v in made['identities'].values())} identities, none among the "
          f"{made['num_pretrained_identities']} of records 0:{FIRST_HELD_OUT})")
    for split, entries in made["splits"].items():
        names = made["identities"][split]
        from_test = sum(1 for folder, _, _ in entries if folder == "test")
        description = (f"face14 {split}: {len(names)} identities ({names[0]} .. {names[-1]}), {len(entries)} images "
                       f"({len(entries) - from_test} of ytf68/train, {from_test} of ytf68/test); tools/make_face14.py")
        path = args.out / f"{split}.json"
        path.write_text(json.dumps(coco_json(entries, description)), encoding="utf-8")
        print(f"  {split:5s} {len(names):3d} identities {len(entries):4d} images ({len(entries) - from_test} "
              f"ytf68/train + {from_test} ytf68/test)  {names[0]} .. {names[-1]}  -> {path}")
    scheme_path = args.out / "face14.yaml"
    scheme_path.write_text("# written by tools/make_face14.py\n" + yaml.safe_dump(scheme_dict(), sort_keys=False),
                           encoding="utf-8")
    print(f"  scheme -> {scheme_path} (inter-ocular NME: {INTEROCULAR[0]}, {INTEROCULAR[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
