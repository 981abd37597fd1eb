#!/usr/bin/env python3
"""The registries' default sets: what the main job runs when nothing is named, and the
peers' methods and ROAD, which run when named."""

import math

from captum_cams.kit.benchmark import (
    DEFAULT_METHODS,
    DEFAULT_METRICS,
    METHODS,
    METRICS,
    EmbeddedData,
    parse_names,
    run_benchmark,
)
from captum_cams.kit.models import embedded_default_layer, load_embedded_cluttered

#: The main job's methods (its time is measured with these).
MAIN_JOB = [
    "gradcam", "gradcam++", "xgradcam", "layercam", "ablationcam", "scorecam",
    "liftcam", "shapcam", "igcam", "tft", "libracam",
]  # fmt: skip
PEERS = [
    "hirescam", "gradcamelementwise", "eigencam", "eigengradcam", "sscam", "iscam",
    "smoothgradcam++", "relevancecam",
]  # fmt: skip


def test_the_default_sets_are_the_main_jobs() -> None:
    assert DEFAULT_METHODS == MAIN_JOB
    assert parse_names(None, METHODS, "--methods") == MAIN_JOB
    assert parse_names("all", METHODS, "--methods") == MAIN_JOB + PEERS
    assert parse_names("sscam,gradcam", METHODS, "--methods") == ["sscam", "gradcam"]
    assert [m for m in METRICS if m not in DEFAULT_METRICS] == ["road_morf", "road_lerf"]


def test_every_peer_method_and_road_run_in_the_benchmark() -> None:
    model = load_embedded_cluttered().eval()
    result = run_benchmark(
        model, embedded_default_layer(model), EmbeddedData(1), PEERS,
        ["average_drop", "road_morf", "road_lerf"], batch_size=1, progress=False,
    )  # fmt: skip
    assert [row["method"] for row in result.rows] == PEERS
    for row in result.rows:
        for metric in ("average_drop", "road_morf", "road_lerf"):
            assert math.isfinite(row[metric]) and 0.0 <= row[metric] <= 1.0, (row, metric)
