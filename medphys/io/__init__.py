"""File formats: NIfTI (nibabel), atomic writes."""

from ._atomic import atomic_path as atomic_path
from ._atomic import remove_partial_files as remove_partial_files
from ._atomic import write_bytes_atomic as write_bytes_atomic
from ._atomic import write_text_atomic as write_text_atomic
from ._nifti import load_nifti as load_nifti
from ._nifti import save_nifti as save_nifti
