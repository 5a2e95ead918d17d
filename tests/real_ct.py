"""Real CT tiles for tests: the CT slices that ship in the pydicom-data wheel (693_UNCR, a 512²
head slice; eCT_Supplemental, two enhanced-CT frames) and pydicom's CT_small (128²), read with
pydicom alone (independently of `medphys.io`)."""

from __future__ import annotations

import pathlib

import numpy as np
import pydicom
from pydicom.data import get_testdata_file


def ct_slices() -> list[np.ndarray]:
    """The HU slices, in the order 693_UNCR, eCT_Supplemental (2 frames), CT_small."""
    import data_store

    folder = pathlib.Path(data_store.__file__).parent / "data"
    paths = [folder / "693_UNCR.dcm", folder / "eCT_Supplemental.dcm"]
    paths.append(pathlib.Path(get_testdata_file("CT_small.dcm")))
    slices = []
    for path in paths:
        ds = pydicom.dcmread(path)
        px = ds.pixel_array.astype(np.float64)
        if "SharedFunctionalGroupsSequence" in ds:
            t = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
        else:
            t = ds
        hu = px * float(t.RescaleSlope) + float(t.RescaleIntercept)
        slices.extend(hu.reshape((-1, *hu.shape[-2:])))
    return slices


def ct_tiles(size: int = 32) -> np.ndarray:
    """Non-overlapping ``size``² tiles at least half body (> −500 HU), not constant."""
    tiles = []
    for s in ct_slices():
        h, w = (np.asarray(s.shape) // size) * size
        t = s[:h, :w].reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3)
        t = t.reshape(-1, size, size)
        keep = ((t > -500).mean(axis=(1, 2)) >= 0.5) & (t.std(axis=(1, 2)) > 1.0)
        tiles.append(t[keep])
    return np.concatenate(tiles)
