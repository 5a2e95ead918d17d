"""Pictures: slice montages (matplotlib, off-screen) and 3-D surface renders (PyVista, off-screen)."""

from ._montage import Panel as Panel
from ._montage import radiological_slice as radiological_slice
from ._montage import save_montage as save_montage
from ._render import render_labels as render_labels
