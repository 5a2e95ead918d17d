"""File formats: NIfTI (nibabel), DICOM (pydicom, highdicom), nnU-Net v2 datasets, atomic writes."""

from ._atomic import atomic_path as atomic_path
from ._atomic import remove_partial_files as remove_partial_files
from ._atomic import write_bytes_atomic as write_bytes_atomic
from ._atomic import write_text_atomic as write_text_atomic
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._dicom import DicomSeries as DicomSeries
from ._dicom import load_dicom_series as load_dicom_series
from ._dicom import save_dicom_series as save_dicom_series
from ._dicom_dataset import export_dicom as export_dicom
from ._dicom_seg import save_dicom_seg as save_dicom_seg
from ._labels import label_table as label_table
from ._labels import remap_labels as remap_labels
from ._nifti import load_nifti as load_nifti
from ._nifti import save_nifti as save_nifti
from ._nifti import structure_row as structure_row
from ._nnunet import export_nnunet as export_nnunet
from ._nnunet import write_nnunet as write_nnunet
from ._real_images import RealImage as RealImage
from ._real_images import RealImageSet as RealImageSet
from ._real_images import load_real_images as load_real_images
from ._real_images import split_by_patient as split_by_patient
