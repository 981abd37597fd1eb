#!/usr/bin/env python3
r"""The seeds' headline tables on a real ImageNet network: the shared MobileNetV1 and its photos.

Model and data: ``../shared/data/imagenet`` (or ``CAPTUM_CAMS_IMAGENET``): MobileNetV1
(width 0.75, 192 × 192 inputs, TF-slim's weights; 78.9 % top-1 on the folder's photos), and
1,000 photos, one per ImageNet class. ``--num-images`` photos are drawn with the seed; each is
explained for the model's predicted class; removed pixels are 0 in the normalised input (mid
grey, as the inputs lie in [-1, 1]).

Tables (the paper's setting in brackets; see docs/imagenet_reproduction.md for the readings):

1. **Libra-CAM, Tables 1–2** (Lee & Han, IJCAI 2022) at ``features[-1]`` (768 × 6 × 6):
   AUC of the mean API-vs-APD curve over soft masks ``I_t ⊙ x``, t = 0, 0.1, …, 1, and API,
   APD, IR, DR of the soft mask ``I ⊙ x`` (t = 0), for Grad-CAM, Grad-CAM++, Score-CAM,
   LIFT-CAM and Libra-CAM; then the R / F / C ablation of Libra-CAM. The reference library
   (τ = 1e-4, R = 30) is built from the photos *not* evaluated (the paper: training images).
2. **LIFT-CAM, Table 2** (Jung & Oh, ICCV 2021): cosine similarity of each method's channel
   weights to SHAP-CAM's at ``features[-3]``, whose head (a depthwise and a pointwise block
   with ReLU6, pooling, a 1 × 1 classifier) is non-linear; the reference is SHAP-CAM with
   ``--shap-permutations`` permutations on the first ``--shap-images`` images, and
   SHAP-CAM_10 with other permutations shows how close a second estimate gets.
   **LIFT-CAM, AD / IC and insertion / deletion** at ``features[-1]`` (the last
   convolutional layer, as the paper): average drop and increase in confidence of the soft
   mask, RISE insertion (blurred start) and deletion (zero end) AUC, steps of 2.5 %.
3. **Integrated Grad-CAM** (Sattarzadeh et al., ICASSP 2021) at ``features[-1]``: Drop % and
   Increase % of the binary mask of the top 15 % pixels, against Grad-CAM and Grad-CAM++;
   zero baseline, ``n_steps`` 50, Riemann right.
4. **TFT, Table 3** (Han, Lee & Lee, Appl. Sci. 2022) at ``features[-1]``: average increase
   (AI, % of images whose probability rises) and average drop (AD) of each method's binary
   mask at its usual threshold (Grad-CAM and Layer-CAM keep the top 15 %, Grad-CAM++ 50 %,
   Ablation-CAM 20 %), and of TFT's own binary mask ``1[I_τ* ≠ 0]``.

Intervals: 95 %. Proportions (IR, DR, IC, Increase %, AI) get the exact (Clopper–Pearson)
binomial interval; means (API, APD, AD, Drop %, insertion / deletion AUC, cosines) and the
AUC of the mean curve a percentile bootstrap over the images (``--bootstrap`` resamples,
seeded). A reading compares the claimed winner with each rival by a paired bootstrap of the
difference over the same images: a measure *holds* when the winner is ahead of every rival
with the interval of the difference above 0, *fails* when some rival is ahead with its
interval above 0, and is *not separated* otherwise; a claim *reproduces* when every measure
holds, *does not* when none does, and is *mixed* otherwise.

Per-image results are appended to ``<out>/records.jsonl`` after every batch, so a run can
be stopped and resumed (``--resume``), or only summarised (``--report-only``); the tables are
printed and written to ``<out>/tables.md``. Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/imagenet_reproduction.py --num-images 16

On Linux, glibc returns Score-CAM's large buffers to the system after every chunk and the
kernel zeroes them again for the next one: measured, that system time exceeds the model's
own compute (22 s of system time against 14 s of user time for two photos). Keeping them in
the heap removes it: prefix the command with
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams import (  # noqa: E402
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLibraCam,
    LayerLiftCam,
    LayerScoreCam,
    LayerShapCam,
    LayerXGradCam,
    ReferenceLibrary,
    threshold_fine_tuning,
)
from captum_cams.kit.datasets import (  # noqa: E402
    IMAGENET_MOBILENET_FILE,
    ImageNetPhotos,
    find_imagenet_root,
)
from captum_cams.kit.models import mobilenet_v1_075_192  # noqa: E402
from captum_cams.metrics import (  # noqa: E402
    api_apd_auc,
    average_drop,
    coefficient_cosine_similarity,
    deletion_auc,
    increase_in_confidence,
    insertion_auc,
    threshold_sweep,
)

#: Most inputs per forward pass in the metrics and the perturbation methods.
CHUNK = 64
#: Each method's usual threshold in the TFT paper's Table 1: the fraction of pixels kept.
TFT_KEEP_TOP = {"Grad-CAM": 0.15, "Grad-CAM++": 0.5, "Ablation-CAM": 0.2, "Layer-CAM": 0.15}
#: Libra-CAM's ablation rows: (use_references, filter_references, calibrate).
ABLATION = [
    (False, False, False),
    (False, False, True),
    (True, False, False),
    (True, True, False),
    (True, False, True),
    (True, True, True),
]
#: The Libra-CAM paper's Table 1 on ImageNet (VGG-16 / ResNet-50): AUC, API, APD, IR, DR.
#: Read from the authors' repository (github.com/sanglee/Libra-CAM, Results/main_result_table.png,
#: the paper's Table 1); LIFT-CAM is not in that table.
LIBRA_PAPER = {
    "Grad-CAM": ((0.114, 0.041, 0.137, 0.294, 0.702), (0.145, 0.043, 0.100, 0.381, 0.616)),
    "Grad-CAM++": ((0.101, 0.037, 0.145, 0.278, 0.717), (0.145, 0.043, 0.100, 0.379, 0.618)),
    "Score-CAM": ((0.163, 0.061, 0.104, 0.318, 0.678), (0.190, 0.060, 0.064, 0.421, 0.574)),
    "Libra-CAM": ((0.267, 0.129, 0.030, 0.705, 0.291), (0.273, 0.115, 0.034, 0.721, 0.276)),
}
LIBRA_MEASURES = ("AUC", "API", "APD", "IR", "DR")
#: Whether a higher value is better, per measure.
HIGHER = {
    "AUC": True, "API": True, "APD": False, "IR": True, "DR": False, "AD": False, "IC": True,
    "Ins": True, "Del": False, "cos": True, "Drop": False, "Inc": True, "AI": True,
}  # fmt: skip
#: Measures that are proportions of images (exact binomial intervals).
PROPORTIONS = {"IR", "DR", "IC", "Inc", "AI"}


# --------------------------------------------------------------------------- data


def imagenet_folder() -> Path:
    root = find_imagenet_root()
    if root is None or not (root / IMAGENET_MOBILENET_FILE).is_file():
        sys.exit(
            "ImageNet folder not found (needs photos/ and "
            f"{IMAGENET_MOBILENET_FILE}): set CAPTUM_CAMS_IMAGENET or place "
            "shared/data/imagenet beside the project"
        )
    return root


def draw_photos(num_photos: int, num_images: int, seed: int) -> Tuple[List[int], List[int]]:
    r"""
    The evaluated photos, the first ``num_images`` of a seeded order, and the others from
    the end of that order backwards: the library is built from the first of these until
    every class is full (a few dozen photos), so it stays the same when a run is resumed
    with more images.
    """
    order = torch.randperm(num_photos, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[:num_images], order[num_images:][::-1]


def build_library(
    model: nn.Module, layer: nn.Module, photos: ImageNetPhotos, tau: float, references: int
) -> ReferenceLibrary:
    r"""Libra-CAM's library from ``photos`` (labelled by their class; the build stops once
    every class holds ``references`` entries)."""
    batches = (
        (
            torch.stack([photos[i][0] for i in range(start, min(start + 16, len(photos)))]),
            torch.tensor(photos.labels[start : start + 16]),
        )
        for start in range(0, len(photos), 16)
    )
    return ReferenceLibrary.build(
        model, layer, batches, 1000, tau=tau, max_per_class=references, progress=False
    )


# --------------------------------------------------------------------------- one batch


def _sweep_record(model: nn.Module, x: Tensor, maps: Tensor, target: Tensor) -> List[Dict]:
    sweep = threshold_sweep(model, x, maps, target=target, max_examples_per_batch=CHUNK)
    return [
        {key: [float(v) for v in getattr(sweep, key)[row]] for key in ("api", "apd", "ir", "dr")}
        for row in range(x.shape[0])
    ]


def _binary_scores(
    model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, keep_top: Optional[float]
) -> Tuple[Tensor, Tensor]:
    r"""Increase (0/1) and drop of the binary mask: top ``keep_top`` pixels, or ``1[I ≠ 0]``."""
    options: Dict[str, Any] = dict(max_examples_per_batch=CHUNK, binary=True)
    if keep_top is not None:
        options["keep_top_fraction"] = keep_top
    increase = increase_in_confidence(model, x, maps, target, **options)
    drop = average_drop(model, x, maps, target, **options)
    return increase, drop


def run_batch(
    model: nn.Module,
    library: ReferenceLibrary,
    x: Tensor,
    target: Tensor,
    shap_rows: Sequence[int],
    args: argparse.Namespace,
) -> Tuple[List[Dict[str, Any]], Dict[str, float]]:
    r"""Every table's per-image values for one batch, and the seconds of each method."""
    last, previous = model.features[-1], model.features[-3]
    seconds: Dict[str, float] = {}
    maps: Dict[str, Tensor] = {}

    def timed(name: str, explain: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = explain()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        return result

    libra = LayerLibraCam(model, last, library=library)
    makers: Dict[str, Callable[[], Tensor]] = {
        "Grad-CAM": lambda: LayerGradCam(model, last).attribute(
            x, target=target, relu_attributions=True
        ),
        "Grad-CAM++": lambda: LayerGradCamPlusPlus(model, last).attribute(x, target=target),
        "XGrad-CAM": lambda: LayerXGradCam(model, last).attribute(x, target=target),
        "Layer-CAM": lambda: LayerCam(model, last).attribute(x, target=target),
        "Ablation-CAM": lambda: LayerAblationCam(model, last).attribute(
            x, target=target, internal_batch_size=4 * CHUNK
        ),
        "Score-CAM": lambda: LayerScoreCam(model, last).attribute(
            x, target=target, internal_batch_size=CHUNK
        ),
        "LIFT-CAM": lambda: LayerLiftCam(model, last).attribute(x, target=target),
        "Integrated Grad-CAM": lambda: LayerIntegratedGradCam(model, last).attribute(
            x, target=target, n_steps=args.ig_steps, internal_batch_size=2 * CHUNK
        ),
    }
    for name, make in makers.items():
        maps[name] = timed(name, make).detach()
    for flags in ABLATION:
        use_r, use_f, use_c = flags
        name = "Libra-CAM" if flags == (True, True, True) else _ablation_name(flags)
        maps[name] = timed(
            name,
            lambda r=use_r, f=use_f, c=use_c: libra.attribute(
                x,
                target=target,
                internal_batch_size=CHUNK,
                use_references=r,
                filter_references=f,
                calibrate=c,
            ),  # fmt: skip
        ).detach()

    records: List[Dict[str, Any]] = [{} for _ in range(x.shape[0])]
    # Libra-CAM, Tables 1-2: the threshold sweep of soft masks
    libra_methods = ["Grad-CAM", "Grad-CAM++", "Score-CAM", "LIFT-CAM", "Libra-CAM"]
    libra_methods += [_ablation_name(flags) for flags in ABLATION if flags != (True, True, True)]
    for name in libra_methods:
        for row, sweep in enumerate(_sweep_record(model, x, maps[name], target)):
            records[row].setdefault("sweep", {})[name] = sweep
    # LIFT-CAM: AD / IC of the soft mask, insertion / deletion
    for name in ["Grad-CAM", "Grad-CAM++", "XGrad-CAM", "Score-CAM", "Ablation-CAM", "LIFT-CAM"]:
        soft = dict(target=target, max_examples_per_batch=CHUNK)
        values = {
            "AD": average_drop(model, x, maps[name], **soft),
            "IC": increase_in_confidence(model, x, maps[name], **soft),
            "Ins": insertion_auc(model, x, maps[name], **soft),
            "Del": deletion_auc(model, x, maps[name], **soft),
        }
        for row in range(x.shape[0]):
            records[row].setdefault("lift", {})[name] = {
                k: float(v[row]) for k, v in values.items()
            }
    # Integrated Grad-CAM: Drop % / Increase % at the top 15 %
    for name in ["Grad-CAM", "Grad-CAM++", "Integrated Grad-CAM"]:
        increase, drop = _binary_scores(model, x, maps[name], target, 0.15)
        for row in range(x.shape[0]):
            records[row].setdefault("igcam", {})[name] = {
                "Drop": float(drop[row]),
                "Inc": float(increase[row]),
            }
    # TFT: each method's binary mask at its usual threshold, and TFT's own binary mask
    for name, keep_top in TFT_KEEP_TOP.items():
        increase, drop = _binary_scores(model, x, maps[name], target, keep_top)
        result = timed(
            f"TFT({name})",
            lambda m=maps[name]: threshold_fine_tuning(
                model, x, m, target=target, max_examples_per_batch=CHUNK
            ),
        )
        tuned = result.tuned_maps
        tft_increase, tft_drop = _binary_scores(model, x, tuned, target, None)
        # what TFT's binary mask keeps: an example whose RPI is 0 at every threshold
        # keeps its map unchanged, and so nearly the whole image
        kept = (tuned.flatten(1) > tuned.flatten(1).amin(1, keepdim=True)).double().mean(1)
        for row in range(x.shape[0]):
            records[row].setdefault("tft", {})[name] = {
                "AI": float(increase[row]),
                "AD": float(drop[row]),
                "TFT AI": float(tft_increase[row]),
                "TFT AD": float(tft_drop[row]),
                "kept": float(kept[row]),
                "unchanged": bool(torch.isnan(result.thresholds[row])),
            }
    # LIFT-CAM, Table 2: channel weights at features[-3] against SHAP-CAM
    if shap_rows:
        rows = list(shap_rows)
        xs, ts = x[rows], target[rows]
        reference = timed(
            f"SHAP-CAM_{args.shap_permutations} (reference)",
            lambda: LayerShapCam(model, previous).attribute(
                xs, target=ts, num_permutations=args.shap_permutations, seed=args.seed,
                return_weights=True, internal_batch_size=4 * CHUNK,
            )[1],
        )  # fmt: skip
        weights_of: Dict[str, Callable[[], Tensor]] = {
            "Grad-CAM": lambda: LayerGradCam(model, previous).attribute(
                xs, target=ts, relu_attributions=True, return_weights=True
            )[1],
            "Grad-CAM++": lambda: LayerGradCamPlusPlus(model, previous).attribute(
                xs, target=ts, return_weights=True
            )[1],
            "XGrad-CAM": lambda: LayerXGradCam(model, previous).attribute(
                xs, target=ts, return_weights=True
            )[1],
            "Ablation-CAM": lambda: LayerAblationCam(model, previous).attribute(
                xs, target=ts, return_weights=True, internal_batch_size=4 * CHUNK
            )[1],
            "LIFT-CAM": lambda: LayerLiftCam(model, previous).attribute(
                xs, target=ts, return_weights=True
            )[1],
            "SHAP-CAM_10": lambda: LayerShapCam(model, previous).attribute(
                xs, target=ts, num_permutations=10, seed=args.seed + 1, return_weights=True,
                internal_batch_size=4 * CHUNK,
            )[1],
        }  # fmt: skip
        for name, weights in weights_of.items():
            cosine = coefficient_cosine_similarity(
                timed(f"{name} @ features[-3]", weights), reference
            )
            for position, row in enumerate(rows):
                records[row].setdefault("cos", {})[name] = float(cosine[position])
    return records, seconds


def _ablation_name(flags: Tuple[bool, bool, bool]) -> str:
    return " ".join("✓" if flag else "–" for flag in flags)


# --------------------------------------------------------------------------- statistics


class Stats:
    r"""Seeded bootstrap resamples of the images, shared by every table."""

    def __init__(self, n: int, resamples: int, seed: int) -> None:
        generator = np.random.default_rng(seed)
        self.n = n
        self.draws = generator.integers(0, n, size=(resamples, n)) if n else None

    def mean_interval(self, values: np.ndarray, proportion: bool) -> Tuple[float, float, float]:
        mean = float(values.mean())
        if proportion:
            return (mean, *clopper_pearson(int(round(values.sum())), len(values)))
        assert self.draws is not None
        resampled = values[self.draws].mean(axis=1)
        low, high = np.percentile(resampled, [2.5, 97.5])
        return mean, float(low), float(high)

    def auc_interval(self, api: np.ndarray, apd: np.ndarray) -> Tuple[float, float, float]:
        r"""AUC of the mean API-vs-APD curve and its bootstrap interval (curves ``n x T``)."""
        assert self.draws is not None
        value = _auc(api.mean(0), apd.mean(0))
        resampled = np.array([_auc(api[d].mean(0), apd[d].mean(0)) for d in self.draws])
        low, high = np.percentile(resampled, [2.5, 97.5])
        return value, float(low), float(high)

    def difference(
        self, statistic: Callable[[np.ndarray], float], winner: Any, rival: Any
    ) -> Tuple[float, float, float]:
        r"""``statistic(winner) − statistic(rival)`` and its paired bootstrap interval."""
        assert self.draws is not None
        value = statistic(winner) - statistic(rival)
        resampled = np.array(
            [statistic(_take(winner, d)) - statistic(_take(rival, d)) for d in self.draws]
        )
        low, high = np.percentile(resampled, [2.5, 97.5])
        return value, float(low), float(high)


def _take(values: Any, rows: np.ndarray) -> Any:
    if isinstance(values, tuple):
        return tuple(v[rows] for v in values)
    return values[rows]


def _auc(api: np.ndarray, apd: np.ndarray) -> float:
    return float(api_apd_auc((torch.from_numpy(api), torch.from_numpy(apd))))


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> Tuple[float, float]:
    r"""The exact binomial interval of a proportion."""
    from scipy.stats import beta

    alpha = 1 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    return low, high


def judge(
    stats: Stats,
    winner: str,
    rivals: Sequence[str],
    measures: Sequence[str],
    values_of: Callable[[str, str], Any],
    statistic_of: Callable[[str], Callable[[Any], float]],
) -> Tuple[str, List[str]]:
    r"""
    The reading of a claim "``winner`` beats every rival on every measure", and one
    verdict per measure (see the module).
    """
    verdicts = []
    for measure in measures:
        sign = 1.0 if HIGHER[measure] else -1.0
        statistic = statistic_of(measure)
        ahead_of_all, behind_someone = True, False
        for rival in rivals:
            diff, low, high = stats.difference(
                statistic, values_of(winner, measure), values_of(rival, measure)
            )
            low, high = sorted((sign * low, sign * high))
            if not low > 0:
                ahead_of_all = False
            if high < 0:
                behind_someone = True
        verdicts.append("holds" if ahead_of_all else "fails" if behind_someone else "not separated")
    return _reading(verdicts), [f"{m}: {v}" for m, v in zip(measures, verdicts)]


def _reading(verdicts: Sequence[str]) -> str:
    held = sum(v.endswith("holds") for v in verdicts)
    if held == len(verdicts):
        return "reproduces"
    return "does not reproduce" if held == 0 else "mixed"


def _cell(value: Tuple[float, float, float], digits: int = 3, scale: float = 1.0) -> str:
    mean, low, high = (scale * v for v in value)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# --------------------------------------------------------------------------- tables


def tables(records: List[Dict[str, Any]], args: argparse.Namespace, context: str) -> str:
    n = len(records)
    stats = Stats(n, args.bootstrap, args.seed)
    out: List[str] = [context, ""]

    # Libra-CAM, Table 1 and 2
    def curves(name: str, key: str) -> np.ndarray:
        return np.array([r["sweep"][name][key] for r in records], dtype=np.float64)

    def libra_values(name: str, measure: str) -> Any:
        if measure == "AUC":
            return (curves(name, "api"), curves(name, "apd"))
        return curves(name, measure.lower())[:, 0]

    def libra_statistic(measure: str) -> Callable[[Any], float]:
        if measure == "AUC":
            return lambda pair: _auc(pair[0].mean(0), pair[1].mean(0))
        return lambda values: float(values.mean())

    def libra_cells(name: str) -> List[str]:
        cells = [_cell(stats.auc_interval(*libra_values(name, "AUC")))]
        for measure in LIBRA_MEASURES[1:]:
            cells.append(
                _cell(stats.mean_interval(libra_values(name, measure), measure in PROPORTIONS))
            )
        return cells

    out += [
        f"### Libra-CAM, Table 1 (features[-1], 768 x 6 x 6; n = {n})",
        "",
        "| method | AUC ↑ | API ↑ | APD ↓ | IR ↑ | DR ↓ | paper, VGG-16 (AUC, API, APD, IR, "
        "DR) | paper, ResNet-50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ["Grad-CAM", "Grad-CAM++", "Score-CAM", "LIFT-CAM", "Libra-CAM"]:
        paper = LIBRA_PAPER.get(name)
        shown = (
            [", ".join(f"{v:.3f}" for v in paper[0]), ", ".join(f"{v:.3f}" for v in paper[1])]
            if paper
            else ["not in the paper's table", "—"]
        )
        out.append(f"| {name} | " + " | ".join(libra_cells(name) + shown) + " |")
    reading, verdicts = judge(
        stats, "Libra-CAM", ["Grad-CAM", "Grad-CAM++", "Score-CAM", "LIFT-CAM"],
        LIBRA_MEASURES, libra_values, libra_statistic,
    )  # fmt: skip
    out += [
        "",
        f"Reading (claim: Libra-CAM beats every other method on all five measures): **{reading}** "
        f"({'; '.join(verdicts)}).",
        "",
        f"### Libra-CAM, Table 2: ablation (R references, F filtering, C calibration; n = {n})",
        "",
        "| R F C | AUC ↑ | API ↑ | APD ↓ | IR ↑ | DR ↓ |",
        "|---|---|---|---|---|---|",
    ]
    for flags in ABLATION:
        name = "Libra-CAM" if flags == (True, True, True) else _ablation_name(flags)
        out.append(f"| {_ablation_name(flags)} | " + " | ".join(libra_cells(name)) + " |")
    reading, verdicts = judge(
        stats, "Libra-CAM", [_ablation_name(f) for f in ABLATION if f != (True, True, True)],
        LIBRA_MEASURES, libra_values, libra_statistic,
    )  # fmt: skip
    out += [
        "",
        f"Reading (claim: the full method, ✓ ✓ ✓, is the best combination on every measure): "
        f"**{reading}** ({'; '.join(verdicts)}).",
        "",
    ]

    # LIFT-CAM, Table 2
    shap = [r for r in records if "cos" in r]
    if shap:
        shap_stats = Stats(len(shap), args.bootstrap, args.seed)
        names = list(shap[0]["cos"])
        out += [
            "### LIFT-CAM, Table 2: cosine of channel weights to "
            f"SHAP-CAM_{args.shap_permutations} (features[-3], non-linear head; n = {len(shap)})",
            "",
            "| method | mean cosine ↑ |",
            "|---|---|",
        ]
        cos = {name: np.array([r["cos"][name] for r in shap]) for name in names}
        for name in names:
            out.append(f"| {name} | {_cell(shap_stats.mean_interval(cos[name], False))} |")
        reading, verdicts = judge(
            shap_stats, "LIFT-CAM", ["Grad-CAM", "Grad-CAM++", "XGrad-CAM"], ["cos"],
            lambda name, _m: cos[name], lambda _m: lambda v: float(v.mean()),
        )  # fmt: skip
        out += [
            "",
            f"Reading (claim: LIFT-CAM's weights are the closest to the Shapley values among the "
            f"one-pass methods Grad-CAM, Grad-CAM++, XGrad-CAM): **{reading}** "
            f"({'; '.join(verdicts)}).",
            "",
        ]

    def table(
        key: str, title: str, names: Sequence[str], measures: Sequence[str], scale: Dict[str, float]
    ) -> Dict[str, Dict[str, np.ndarray]]:
        values = {
            name: {m: np.array([r[key][name][m] for r in records]) for m in measures}
            for name in names
        }
        arrows = " | ".join(
            f"{m} {'↑' if HIGHER[m.replace('TFT ', '')] else '↓'}" for m in measures
        )
        out.extend([title, "", f"| method | {arrows} |", "|---" * (len(measures) + 1) + "|"])
        for name in names:
            cells = [
                _cell(
                    stats.mean_interval(values[name][m], m.replace("TFT ", "") in PROPORTIONS),
                    2 if scale.get(m, 1.0) != 1.0 else 3,
                    scale.get(m, 1.0),
                )
                for m in measures
            ]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
        return values

    mean_of = lambda _m: lambda v: float(v.mean())  # noqa: E731
    lift_names = ["Grad-CAM", "Grad-CAM++", "XGrad-CAM", "Score-CAM", "Ablation-CAM", "LIFT-CAM"]
    values = table(
        "lift",
        f"### LIFT-CAM: average drop, increase in confidence (soft masks, %), insertion and "
        f"deletion AUC (features[-1]; n = {n})",
        lift_names, ["AD", "IC", "Ins", "Del"], {"AD": 100.0, "IC": 100.0},
    )  # fmt: skip
    reading, verdicts = judge(
        stats, "LIFT-CAM", [m for m in lift_names if m != "LIFT-CAM"], ["AD", "IC", "Ins", "Del"],
        lambda name, m: values[name][m], mean_of,
    )  # fmt: skip
    out += [
        f"Reading (claim: LIFT-CAM is better than the other CAMs on all four): **{reading}** "
        f"({'; '.join(verdicts)}).",
        "",
    ]
    ig_names = ["Grad-CAM", "Grad-CAM++", "Integrated Grad-CAM"]
    values = table(
        "igcam",
        f"### Integrated Grad-CAM: Drop % and Increase % of the top-15 % binary mask "
        f"(features[-1]; n = {n})",
        ig_names, ["Drop", "Inc"], {"Drop": 100.0, "Inc": 100.0},
    )  # fmt: skip
    reading, verdicts = judge(
        stats, "Integrated Grad-CAM", ["Grad-CAM", "Grad-CAM++"], ["Drop", "Inc"],
        lambda name, m: values[name][m], mean_of,
    )  # fmt: skip
    out += [
        f"Reading (claim: Integrated Grad-CAM has a lower Drop % and a higher Increase % than "
        f"Grad-CAM and Grad-CAM++): **{reading}** ({'; '.join(verdicts)}).",
        "",
    ]
    tft_names = list(TFT_KEEP_TOP)
    values = table(
        "tft",
        f"### TFT, Table 3: average increase (AI, %) and average drop (AD, %) of binary masks, "
        f"each method at its usual threshold and with TFT (features[-1]; n = {n})",
        [f"{name}" for name in tft_names], ["AI", "AD", "TFT AI", "TFT AD"],
        {"AI": 100.0, "AD": 100.0, "TFT AI": 100.0, "TFT AD": 100.0},
    )  # fmt: skip
    verdicts, differences = [], []
    for name in tft_names:
        for measure in ("AI", "AD"):
            sign = 1.0 if HIGHER[measure] else -1.0
            diff, low, high = stats.difference(
                mean_of(measure), values[name][f"TFT {measure}"], values[name][measure]
            )
            low, high = sorted((sign * low, sign * high))
            verdict = "holds" if low > 0 else "fails" if high < 0 else "not separated"
            verdicts.append(f"{name} {measure}: {verdict}")
            differences.append(f"{name} {measure} {100 * diff:+.1f}")
    reading = _reading(verdicts)
    kept = [
        f"{name} {100 * np.mean([r['tft'][name]['kept'] for r in records]):.0f} % of the pixels, "
        f"{sum(r['tft'][name]['unchanged'] for r in records)} of {n} maps unchanged"
        for name in tft_names
    ]
    out += [
        f"TFT's binary masks keep on average: {'; '.join(kept)} (a map is returned unchanged "
        "when no threshold raises the probability; its binary mask then keeps nearly the whole "
        "image, which alone lowers AD).",
        "",
        f"Reading (claim: TFT raises AI and lowers AD for every method): **{reading}** "
        f"({'; '.join(verdicts)}; TFT − original in points: {', '.join(differences)}).",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=64, help="photos explained")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--references", type=int, default=30, help="Libra-CAM's R")
    parser.add_argument("--tau", type=float, default=1e-4, help="Libra-CAM's τ")
    parser.add_argument("--shap-images", type=int, default=8, help="images of LIFT's Table 2")
    parser.add_argument("--shap-permutations", type=int, default=32, help="of the reference")
    parser.add_argument("--ig-steps", type=int, default=50, help="Integrated Grad-CAM's n_steps")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="imagenet_reproduction_out", help="records and tables")
    parser.add_argument("--resume", action="store_true", help="skip photos already recorded")
    parser.add_argument("--report-only", action="store_true", help="only summarise the records")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    root = imagenet_folder()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record_file = out / "records.jsonl"
    done: Dict[int, Dict[str, Any]] = {}
    if (args.resume or args.report_only) and record_file.is_file():
        for line in record_file.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["photo"]] = record
    elif record_file.exists():
        record_file.unlink()

    model = mobilenet_v1_075_192(root / IMAGENET_MOBILENET_FILE)
    evaluated, others = draw_photos(1000, args.num_images, args.seed)
    started = time.perf_counter()
    library_photos = ImageNetPhotos(root, indices=others)
    library = build_library(model, model.features[-1], library_photos, args.tau, args.references)
    counts = library.counts()
    library_line = (
        f"library from the other photos (τ = {args.tau:g}, R = {args.references}): "
        f"{library.num_entries} activations, references per class {min(counts)}..{max(counts)}, "
        f"built in {time.perf_counter() - started:.0f} s"
    )
    print(library_line, file=sys.stderr, flush=True)

    photos = ImageNetPhotos(root, indices=evaluated)
    todo = [i for i in range(len(photos)) if photos.labels[i] not in done]
    if not args.report_only:
        for start in range(0, len(todo), args.batch_size):
            rows = todo[start : start + args.batch_size]
            x = torch.stack([photos[i][0] for i in rows])
            with torch.no_grad():
                probabilities = torch.softmax(model(x), dim=1)
            target = probabilities.argmax(dim=1)
            shap_rows = [p for p, i in enumerate(rows) if i < args.shap_images]
            began = time.perf_counter()
            records, seconds = run_batch(model, library, x, target, shap_rows, args)
            with record_file.open("a") as stream:
                for position, (i, record) in enumerate(zip(rows, records)):
                    record.update(
                        photo=photos.labels[i],
                        label=photos.labels[i],
                        target=int(target[position]),
                        probability=float(probabilities[position, target[position]]),
                        seconds={k: v / len(rows) for k, v in seconds.items()},
                        position=i,
                    )
                    done[photos.labels[i]] = record
                    stream.write(json.dumps(record) + "\n")
            print(
                f"{len(done)}/{len(photos)} photos, batch {time.perf_counter() - began:.0f} s "
                f"(Score-CAM {seconds['Score-CAM']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    records = [done[label] for label in photos.labels if label in done]
    if not records:
        sys.exit("no photo recorded yet")
    accuracy = sum(r["target"] == r["label"] for r in records) / len(records)
    per_image = {}
    for r in records:
        for name, value in r["seconds"].items():
            per_image[name] = per_image.get(name, 0.0) + value / len(records)
    context = (
        f"MobileNetV1 (width 0.75, 192 x 192, the shared ImageNet weights) on n = {len(records)} "
        f"of the shared folder's photos (one per class, drawn with seed {args.seed}; top-1 "
        f"{100 * accuracy:.1f} % on them), each explained for its predicted class; {library_line}; "
        f"LIFT-CAM Table 2 on the first {sum('cos' in r for r in records)} of them. 95 % "
        f"intervals: Clopper–Pearson for proportions (IR, DR, IC, Increase %, AI), else a "
        f"percentile bootstrap over the images ({args.bootstrap} resamples, seed {args.seed}). "
        f"CPU seconds per image, {args.threads} thread(s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_image.items()))
    )
    text = tables(records, args, context)
    (out / "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
