"""Fixture trees of the public datasets as they unpack (real names, depths, file formats and mask
conventions), tiny: shared by the layout and benchmark tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from cli_helpers import pattern

SIZE = 32


def write(path: Path, arr: np.ndarray) -> Path:
    """Any format by suffix (.JPG/.jpg as the datasets ship them, .png for masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr[:, :, ::-1] if arr.ndim == 3 else arr)
    return path


def mask(*regions: tuple[int, int, int, int, int]) -> np.ndarray:
    """A uint8 mask: (x1, y1, x2, y2, value) rectangles, x2/y2 exclusive."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    for x1, y1, x2, y2, v in regions:
        m[y1:y2, x1:x2] = v
    return m


SMALL, LARGE = (2, 2, 5, 4), (16, 10, 28, 26)  # 6 px and 192 px
UNION = (2, 2, 28, 26)


# ------------------------------------------------------------------------------------------------ trees


def make_visa(root: Path) -> Path:
    top = root / "VisA_20220922"
    imgs = top / "candle" / "Data" / "Images"
    write(imgs / "Normal" / "0000.JPG", pattern("hstripes", 0))
    write(imgs / "Normal" / "0001.JPG", pattern("vstripes", 1))
    write(imgs / "Normal" / "0002.JPG", pattern("vstripes", 2))  # a test normal: never a reference
    write(imgs / "Anomaly" / "000.JPG", pattern("hstripes", 3))
    # VisA masks hold small values: the larger region is 1, the smaller 2 (half the maximum would lose it)
    write(top / "candle" / "Data" / "Masks" / "Anomaly" / "000.png", mask((*SMALL, 2), (*LARGE, 1)))
    (top / "split_csv").mkdir(parents=True)
    (top / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,train,normal,candle/Data/Images/Normal/0001.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/0002.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/404.JPG,candle/Data/Masks/Anomaly/404.png\n"
    )
    return top


def make_loco(root: Path) -> Path:
    top = root / "mvtec_loco_anomaly_detection"
    cat = top / "juice_bottle"
    write(cat / "train" / "good" / "000.png", pattern("hstripes", 0))
    write(cat / "train" / "good" / "001.png", pattern("checker", 1))
    write(cat / "validation" / "good" / "000.png", pattern("vstripes", 2))  # the pool includes validation
    write(cat / "test" / "good" / "000.png", pattern("vstripes", 3))
    write(cat / "test" / "logical_anomalies" / "000.png", pattern("hstripes", 4))
    write(cat / "test" / "structural_anomalies" / "000.png", pattern("checker", 5))
    gt = cat / "ground_truth"
    write(gt / "logical_anomalies" / "000" / "000.png", mask((*SMALL, 255)))  # one file per defect,
    write(gt / "logical_anomalies" / "000" / "001.png", mask((*LARGE, 253)))  # each with its type's level
    write(gt / "structural_anomalies" / "000" / "000.png", mask((*LARGE, 255)))
    (cat / "ground_truth" / "logical_anomalies" / "000" / "defects_config.json").write_text("[]")
    return top


def make_ad2(root: Path) -> Path:
    top = root / "mvtec_ad_2"
    cat = top / "sheet_metal"
    write(cat / "train" / "good" / "000_regular.png", pattern("hstripes", 0))
    write(cat / "validation" / "good" / "000_regular.png", pattern("checker", 1))
    write(cat / "test_public" / "good" / "000_regular.png", pattern("checker", 2))
    write(cat / "test_public" / "bad" / "000_regular.png", pattern("hstripes", 3))
    write(cat / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png", mask((*LARGE, 255)))
    write(cat / "test_private" / "000_regular.png", pattern("checker", 4))  # no labels: never a target
    write(cat / "test_private_mixed" / "000_mixed.png", pattern("checker", 5))
    return top


def make_ksdd2(root: Path) -> Path:
    top = root / "KolektorSDD2"
    for split, name, kind, m in (
        ("train", "10000", "hstripes", mask()),
        ("train", "10001", "checker", mask()),
        ("train", "10002", "vstripes", mask((*LARGE, 255))),  # defective: never a reference
        ("test", "20000", "hstripes", mask((*LARGE, 255))),
        ("test", "20001", "vstripes", mask()),  # empty ground truth: a normal image
    ):
        write(top / split / f"{name}.png", pattern(kind, int(name) % 7))
        write(top / split / f"{name}_GT.png", m)
    return top


def make_realiad(root: Path, categories: tuple[str, ...] = ("audiojack",)) -> Path:
    top = root / "Real-IAD"
    (top / "realiad_jsons" / "realiad_jsons").mkdir(parents=True)
    for name in categories:
        cat = top / "realiad_256" / name
        files = {
            f"OK/S0001/{name}_0001_OK_C1_20231021130059.jpg": "hstripes",
            f"OK/S0001/{name}_0001_OK_C2_20231021130059.jpg": "checker",
            f"OK/S0002/{name}_0002_OK_C1_20231021130101.jpg": "dark",
            f"OK/S0002/{name}_0002_OK_C2_20231021130101.jpg": "vstripes",
            f"OK/S0003/{name}_0003_OK_C1_20231021130103.jpg": "hstripes",
            f"NG/AK/S0010/{name}_0010_NG_C1_20231021130200.jpg": "checker",  # looks like C2, is C1
            f"NG/AK/S0010/{name}_0010_NG_C2_20231021130200.jpg": "checker",  # defect out of sight
        }
        for rel, kind in files.items():
            write(cat / rel, pattern(kind, len(rel)))
        ng_mask = f"NG/AK/S0010/{name}_0010_NG_C1_20231021130200.png"
        write(cat / ng_mask, mask((*SMALL, 255), (*LARGE, 255)))
        ok = [{"category": name, "anomaly_class": "OK", "image_path": r, "mask_path": None} for r in files]
        doc = {
            "meta": {"prefix": "", "normal_class": "OK"},
            "train": ok[:4],
            "test": [
                ok[4],
                {"category": name, "anomaly_class": "AK", "image_path": list(files)[5], "mask_path": ng_mask},
                {"category": name, "anomaly_class": "AK", "image_path": list(files)[6], "mask_path": None},
            ],
        }
        (top / "realiad_jsons" / "realiad_jsons" / f"{name}.json").write_text(json.dumps(doc))
    return top


def make_deeppcb(root: Path) -> Path:
    top = root / "DeepPCB"
    g = top / "PCBData" / "group00041"
    write(g / "00041" / "00041000_test.jpg", pattern("checker", 0)[:, :, 0])  # binarized grayscale
    write(g / "00041" / "00041000_temp.jpg", pattern("checker", 1)[:, :, 0])
    (g / "00041_not").mkdir(parents=True)
    # spaces as the files have them, a comma line as the README says, a box reaching past the image
    (g / "00041_not" / "00041000.txt").write_text(
        f"{' '.join(map(str, LARGE))} 1\n2,2,5,4,3\n30 30 40 40 2\n"
    )
    (top / "PCBData" / "test.txt").write_text(
        "group00041/00041/00041000.jpg group00041/00041_not/00041000.txt\n"
        "group00041/00041/00041999.jpg group00041/00041_not/00041999.txt\n"
    )
    (top / "PCBData" / "trainval.txt").write_text("")
    return top
