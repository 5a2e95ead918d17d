"""Model observers and ROC statistics: pure functions on arrays.

Channels (`(n_channels, *roi_shape)` arrays):

- `laguerre_gauss(roi_shape, *, n_channels, width_px, center=None)`: 2D or 3D Laguerre–Gauss;
- `gabor(roi_shape, *, frequencies, n_orientations, phases, widths_px, center)`: 2D Gabor;
- `slice_channels(channels, volume_shape, *, axis, slices)`: 2D channels on slices of a volume;
- `make_channels(name, roi_shape, **options)`: by name (``"laguerre-gauss"``, ``"gabor"``).

Observers (linear templates, trained then applied):

- `train(kind, signal_present, signal_absent, *, channels=..., ...)` → `Observer`, with kind
  ``"npw"``, ``"npwe"``, ``"hotelling"`` or ``"cho"``;
- `sample_internal_noise(key, observer, batch_shape)`, `score(observer, images, *,
  internal_noise=None)` → scores;
- `evaluate(kind, signal_present, signal_absent, *, split=... | resubstitution=True, key=None)`
  → `Evaluation` (scores, d′, AUC with DeLong interval, the train/test choice recorded);
- `eye_filter(frequency_cpd, *, exponent, peak_cpd)`: the NPWE eye filter.

ROC statistics (``scores`` (n,), ``truth`` (n,) True = signal present):

- `auc`, `delong` → `AUCResult`, `bootstrap_auc(key, ...)`, `delta_auc` → `DeltaAUCResult`,
  `delong_covariance`, `jackknife_covariance`;
- `dprime`, `dprime_se`, `auc_from_dprime`, `dprime_from_auc`;
- `orh_single(scores (readers, cases), truth)` → `ReaderMeanResult`: one test's reader-averaged
  AUC with its random-reader interval;
- `orh(scores (tests, readers, cases), truth, *, covariance, readers)` → `MRMCResult`
  (Obuchowski–Rockette–Hillis);
- `plan_cases(pilot, *, target_se= | power=, effect, alpha, ratio, n_readers)` → `CasePlan`.
"""

from ._channels import CHANNELS as CHANNELS
from ._channels import GABOR_FREQUENCIES as GABOR_FREQUENCIES
from ._channels import gabor as gabor
from ._channels import laguerre_gauss as laguerre_gauss
from ._channels import make_channels as make_channels
from ._channels import slice_channels as slice_channels
from ._mrmc import CasePlan as CasePlan
from ._mrmc import MRMCResult as MRMCResult
from ._mrmc import ReaderMeanResult as ReaderMeanResult
from ._mrmc import orh as orh
from ._mrmc import orh_single as orh_single
from ._mrmc import plan_cases as plan_cases
from ._observers import MAX_HOTELLING_PIXELS as MAX_HOTELLING_PIXELS
from ._observers import OBSERVERS as OBSERVERS
from ._observers import Evaluation as Evaluation
from ._observers import Observer as Observer
from ._observers import evaluate as evaluate
from ._observers import eye_filter as eye_filter
from ._observers import sample_internal_noise as sample_internal_noise
from ._observers import score as score
from ._observers import train as train
from ._roc import AUCResult as AUCResult
from ._roc import DeltaAUCResult as DeltaAUCResult
from ._roc import auc as auc
from ._roc import auc_from_dprime as auc_from_dprime
from ._roc import bootstrap_auc as bootstrap_auc
from ._roc import delong as delong
from ._roc import delong_covariance as delong_covariance
from ._roc import delta_auc as delta_auc
from ._roc import dprime as dprime
from ._roc import dprime_from_auc as dprime_from_auc
from ._roc import dprime_se as dprime_se
from ._roc import jackknife_covariance as jackknife_covariance
