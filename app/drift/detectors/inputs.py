"""Input drift of the structured intent features, with Evidently's `DataDriftPreset`.

Per column, the test is Evidently's choice by column type and sample size: while both samples
have more than 1,000 rows, the normed Wasserstein distance (numerical) or the Jensen-Shannon
distance (categorical), drift at 0.1 or more. Evidently makes that choice on the size of the
reference alone, and its small-sample tests for categories (`chisquare`, `z`) take the
reference's proportions as exact. Measured on unchanged data (20 columns, 40 trials each):

| reference x current rows | Evidently's default | false positives per column |
|---|---|---|
| 500 x 500 | chisquare on 5 categories | 30% |
| 500 x 5,000 | chisquare on 5 categories | 97% |
| 5,000 x 200 | normed Wasserstein | 33% |

So when the smaller sample has at most 1,000 rows (Evidently's own cut, applied to the smaller
side), numerical columns use Evidently's two-sample Kolmogorov-Smirnov test (`ks`) and
categorical ones a two-sample chi-square test of homogeneity (`chi2_contingency`, registered
with Evidently as "chi2_two_sample", rare categories pooled as in
`app.drift.detectors.decisions`), both at p < 0.05, which hold their level.

Dataset verdict. With m columns each tested at 5%, some column is flagged by chance most of the
time (64% for m = 20), so one column never makes dataset drift. The 5% false-positive budget
is split in two halves:

- k*, the fewest drifted columns that chance alone reaches at most 2.5% of the time:
  P(Binomial(m, 0.05) >= k*) <= 0.025 (k* = 4 for 20 columns, 3 for 10, 2 for 2 to 5; with a
  single column, 1);
- a strong column: one whose p-value alone passes Bonferroni's 0.025 / m (distance scores have
  no p-value and never count as strong).

Then:

- "drift": at least k* columns drifted and their share is at least `drift_share` (default
  0.25, passed to Evidently so its report's dataset drift agrees: 5 of 20 columns);
- "warn": at least k* columns drifted but a smaller share, or a strong column;
- "none": otherwise.

Under no shift "drift" thus comes up on at most 2.5% and "warn" or "drift" on at most 5% of
windows, if the columns are independent; strongly correlated columns drift together and make
false positives more likely. (Measured on the unchanged data of the table above, 60 trials per
row: "warn" 0-3.3%, "drift" 0-1.7%.)

Evidently builds every widget while it runs, and the preset computes each column's test three
times (for its metrics, its dataset summary and its table). `render_html=False` runs the same
per-column tests, chosen by Evidently's registry as its `ValueDrift` metric chooses them, with
no report around them (about five times faster on 100,000 rows) and returns `html=""`; a test
checks both ways give the same figures. Evidently is imported on first use: it takes seconds
to import.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
from scipy import stats

from app.drift.detectors.decisions import pooled_counts
from app.drift.detectors.protocol import (
    TRAFFIC,
    TRAINING,
    DriftResult,
    Options,
    Skipped,
    Source,
    Verdict,
)
from app.drift.detectors.sample import Sample
from collectors import conventions as wire

MIN_SAMPLES = 20
SMALL_SAMPLE = 1_000
COLUMN_ALPHA = 0.05
CHI2_TWO_SAMPLE = "chi2_two_sample"
# Rows per side above which Evidently's HTML report is rendered from a sample (see
# InputDetector.test).
HTML_ROWS = 5_000


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    column_type: Literal["numerical", "categorical"]
    stattest_name: str
    """Evidently's name of the test, e.g. "K-S p_value" or "Wasserstein distance (normed)"."""
    score_type: Literal["p_value", "distance"]
    """A p-value drifts below `threshold`; a distance drifts at or above it."""
    drift_score: float
    threshold: float
    drifted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "column_type": self.column_type,
            "stattest_name": self.stattest_name,
            "score_type": self.score_type,
            "drift_score": self.drift_score,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class InputDrift:
    columns: tuple[ColumnDrift, ...]
    drifted_columns: tuple[str, ...]
    share_drifted: float
    drift_share: float
    min_drifted: int
    """k*: the fewest drifted columns that chance alone reaches at most 2.5% of the time."""
    strong_columns: tuple[str, ...]
    """Columns whose p-value passes 0.025 / (number of columns) on its own."""
    dataset_drift: bool
    """Evidently's dataset drift: share_drifted >= drift_share."""
    n_reference: int
    n_current: int
    verdict: Verdict
    html: str = field(default="", repr=False)
    """Evidently's report as a standalone HTML page ("" when not rendered)."""

    def to_json(self) -> dict[str, Any]:
        """Everything but the HTML."""
        return {
            "columns": [column.to_json() for column in self.columns],
            "drifted_columns": list(self.drifted_columns),
            "share_drifted": self.share_drifted,
            "drift_share": self.drift_share,
            "min_drifted": self.min_drifted,
            "strong_columns": list(self.strong_columns),
            "dataset_drift": self.dataset_drift,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "verdict": self.verdict,
        }


def input_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    *,
    drift_share: float = 0.25,
    render_html: bool = True,
) -> InputDrift:
    """Compare the `numerical` and `categorical` columns of `current` with `reference`.

    See the module docstring for the tests and the verdict.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"hours": rng.normal(2, 1, 300), "room": rng.choice(["a", "b"], 300)})
    >>> cur = pd.DataFrame({"hours": rng.normal(2, 1, 300), "room": rng.choice(["a", "b"], 300)})
    >>> input_drift(ref, cur, ["hours"], ["room"], render_html=False).verdict
    'none'
    """
    columns = [*numerical, *categorical]
    _check(reference, current, numerical, categorical, drift_share)
    methods = _methods(numerical, categorical, min(len(reference), len(current)))
    snapshot = None
    if render_html:
        # Evidently ships no type information.
        from evidently import DataDefinition, Dataset, Report  # type: ignore[import-untyped]
        from evidently.presets import DataDriftPreset  # type: ignore[import-untyped]

        definition = DataDefinition(
            numerical_columns=list(numerical), categorical_columns=list(categorical)
        )
        preset = DataDriftPreset(
            columns=columns, drift_share=drift_share, per_column_method=methods
        )
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(
                current[columns].reset_index(drop=True), data_definition=definition
            ),
            Dataset.from_pandas(
                reference[columns].reset_index(drop=True), data_definition=definition
            ),
        )
        found = _column_results(snapshot.dict(), set(numerical))
    else:
        found = _direct_results(reference, current, numerical, categorical, methods)
    by_name = {column.column: column for column in found}
    ordered = tuple(by_name[name] for name in columns)
    drifted = tuple(column.column for column in ordered if column.drifted)
    share = len(drifted) / len(ordered)
    needed = min_drifted_columns(len(ordered))
    strong = tuple(
        column.column
        for column in ordered
        if column.score_type == "p_value" and column.drift_score <= COLUMN_ALPHA / 2 / len(ordered)
    )
    dataset_drift = share >= drift_share
    verdict: Verdict = "none"
    if len(drifted) >= needed:
        verdict = "drift" if dataset_drift else "warn"
    elif strong:
        verdict = "warn"
    return InputDrift(
        columns=ordered,
        drifted_columns=drifted,
        share_drifted=share,
        drift_share=drift_share,
        min_drifted=needed,
        strong_columns=strong,
        dataset_drift=dataset_drift,
        n_reference=len(reference),
        n_current=len(current),
        verdict=verdict,
        html=snapshot.get_html_str(as_iframe=False) if snapshot is not None else "",
    )


class InputDetector:
    """Input drift as a `Detector`: the current window's input features against the training
    dataset of the version's lineage, else against the traffic reference, with `input_drift`
    on the columns both record.

    Before testing, numbers are rounded to 6 decimals and booleans made categories (see
    `_comparable`); a number with more than two distinct values is numerical, anything else
    (strings, booleans, 0/1 flags) categorical. With `Options.artifacts`, the result carries
    Evidently's HTML report as `inputs.html`.
    """

    references: tuple[Source, ...] = (TRAINING, TRAFFIC)

    def __init__(self, options: Options = Options()) -> None:
        self.options = options
        self._reference: pd.DataFrame | None = None

    def fit(self, reference: Sample) -> Self:
        self._reference = reference.features
        return self

    def test(self, current: Sample) -> DriftResult:
        if self._reference is None:
            raise RuntimeError("fit the detector on a reference first")
        features = current.features
        if features.empty or not len(features.columns):
            raise Skipped(f"no input features recorded ({wire.INPUT_FEATURES})")
        common = [c for c in features.columns if c in self._reference.columns]
        if not common:
            raise Skipped("the reference has none of the recorded input features")
        ref_frame, cur_frame = _comparable(self._reference[common], features[common])
        numerical, categorical = _column_types(ref_frame, cur_frame)
        render = self.options.artifacts
        small = max(len(ref_frame), len(cur_frame)) <= HTML_ROWS
        found = input_drift(
            ref_frame, cur_frame, numerical, categorical, render_html=render and small
        )
        scores = found.to_json()
        html = found.html
        if render and not small:
            # The preset builds its charts while it tests, at several times the cost of the
            # tests themselves on large windows: the verdict and scores above come from every
            # row, the HTML report from a uniform sample of HTML_ROWS per side (said in the
            # report's scores), whose histograms show the same shapes.
            scores["html_sample_rows"] = HTML_ROWS
            html = input_drift(
                _sample(ref_frame), _sample(cur_frame), numerical, categorical, render_html=True
            ).html
        share = float(scores.get("share_drifted", 0.0))
        return DriftResult(found.verdict, share, scores, {"inputs.html": html} if html else {})


def min_drifted_columns(columns: int, alpha: float = COLUMN_ALPHA) -> int:
    """The smallest k with P(Binomial(columns, alpha) >= k) <= alpha / 2 (or `columns` when
    even all of them are not that rare: a single column).

    >>> [min_drifted_columns(m) for m in (1, 2, 5, 10, 20, 50)]
    [1, 2, 2, 3, 4, 7]
    """
    for k in range(1, columns + 1):
        if float(stats.binom.sf(k - 1, columns, alpha)) <= alpha / 2:
            return k
    return columns


def _check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    drift_share: float,
) -> None:
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    columns = [*numerical, *categorical]
    if not columns:
        raise ValueError("no columns to compare: name at least one numerical or categorical column")
    if overlap := set(numerical) & set(categorical):
        raise ValueError(f"columns declared both numerical and categorical: {sorted(overlap)}")
    for name, frame in (("reference", reference), ("current", current)):
        if missing := [column for column in columns if column not in frame.columns]:
            raise ValueError(f"the {name} frame lacks the columns {missing}")
        if len(frame) < MIN_SAMPLES:
            raise ValueError(
                f"the {name} frame has {len(frame)} rows; input drift needs at least "
                f"{MIN_SAMPLES} per side: widen the window or wait for more traffic"
            )


def _methods(numerical: Sequence[str], categorical: Sequence[str], smaller: int) -> dict[str, str]:
    """Per-column tests that replace Evidently's default when a sample is small."""
    if smaller > SMALL_SAMPLE:
        return {}
    _register_chi2_two_sample()
    return {column: "ks" for column in numerical} | {
        column: CHI2_TWO_SAMPLE for column in categorical
    }


def _stattests() -> tuple[Any, Any]:
    """Evidently's registry of drift tests and its ColumnType, imported on first use."""
    from evidently.legacy.calculations.stattests import registry  # type: ignore[import-untyped]
    from evidently.legacy.core import ColumnType  # type: ignore[import-untyped]

    return registry, ColumnType


@functools.cache
def _register_chi2_two_sample() -> None:
    registry, column_type = _stattests()
    test = registry.StatTest(
        name=CHI2_TWO_SAMPLE,
        display_name="chi-square (two-sample) p_value",
        allowed_feature_types=[column_type.Categorical],
        default_threshold=COLUMN_ALPHA,
    )
    registry.register_stattest(test, default_impl=_chi2_two_sample)


def _chi2_two_sample(
    reference: pd.Series[Any], current: pd.Series[Any], feature_type: Any, threshold: float
) -> tuple[float, bool]:
    categories, table = pooled_counts(
        [str(v) for v in reference.dropna()], [str(v) for v in current.dropna()]
    )
    if len(categories) < 2 or min(table.sum(axis=1)) == 0:
        return 1.0, False
    p_value = float(stats.chi2_contingency(table, correction=False).pvalue)
    return p_value, p_value < threshold


def _direct_results(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    methods: dict[str, str],
) -> list[ColumnDrift]:
    """Each column's test straight from Evidently's registry, chosen and run as its
    `ValueDrift` metric does (`get_one_column_drift`: infinities and missing values dropped,
    `get_stattest` picks the test by column type and size unless `methods` names one, the
    test's default threshold), without the metric's histograms, correlations and widgets,
    which cost four times the tests on large windows."""
    registry, column_type = _stattests()
    numeric = set(numerical)
    found = []
    for column in [*numerical, *categorical]:
        kind = column_type.Numerical if column in numeric else column_type.Categorical
        sides = []
        for name, frame in (("reference", reference), ("current", current)):
            values = frame[column].replace([np.inf, -np.inf], np.nan).dropna()
            if values.empty:
                raise ValueError(f"the {name} frame has no values in column {column!r}")
            if column in numeric and not pd.api.types.is_numeric_dtype(values):
                raise ValueError(f"column {column!r} of the {name} frame is not numerical")
            sides.append(values)
        test = registry.get_stattest(sides[0], sides[1], kind, methods.get(column))
        result = test(sides[0], sides[1], kind, None)
        display = str(test.display_name)
        found.append(
            ColumnDrift(
                column=column,
                column_type="numerical" if column in numeric else "categorical",
                stattest_name=display,
                score_type="p_value" if "p_value" in display else "distance",
                drift_score=float(result.drift_score),
                threshold=float(result.actual_threshold),
                drifted=bool(result.drifted),
            )
        )
    return found


def _column_results(report: dict[str, Any], numerical: set[str]) -> list[ColumnDrift]:
    """Per-column results out of `Snapshot.dict()`: each `ValueDrift` metric holds the column,
    the test's name, its threshold and the score; its test ("drift") says FAIL when drifted."""
    drifted = {
        test["metric_config"]["metric_id"]: test["status"] == "FAIL"
        for test in report["tests"]
        if test.get("id") == "drift"
    }
    found = []
    for metric in report["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        numeric = config["column"] in numerical
        method = _display_name(str(config["method"]), numeric)
        found.append(
            ColumnDrift(
                column=str(config["column"]),
                column_type="numerical" if numeric else "categorical",
                stattest_name=method,
                score_type="p_value" if "p_value" in method else "distance",
                drift_score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=drifted[metric["id"]],
            )
        )
    return found


def _display_name(method: str, numerical: bool) -> str:
    """Evidently's display name of a test: a metric holds the name it was given ("ks") when
    the method was chosen for it, and the display name ("K-S p_value") when Evidently chose."""
    registry, column_type = _stattests()
    kind = column_type.Numerical if numerical else column_type.Categorical
    try:
        return str(registry.get_registered_stattest(method, kind).display_name)
    except ValueError:
        return method


def _comparable(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with numbers rounded to 6 decimals: a reference stored as float32 holds
    0.15000000596 where traffic says 0.15, and a rank test on tied discrete values would take
    that for a shift."""
    out = []
    for frame in (ref, cur):
        frame = frame.copy()
        for column in frame.columns:
            if pd.api.types.is_bool_dtype(frame[column]):
                frame[column] = frame[column].astype(str)
            elif pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = frame[column].astype(np.float64).round(6)
        out.append(frame.reset_index(drop=True))
    return out[0], out[1]


def _column_types(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numbers with more than two distinct values are numerical; the rest (strings,
    booleans, 0/1 flags) categorical."""
    numerical, categorical = [], []
    for column in ref.columns:
        both = pd.concat([ref[column], cur[column]], ignore_index=True).dropna()
        if pd.api.types.is_numeric_dtype(both) and both.nunique() > 2:
            numerical.append(column)
        else:
            categorical.append(column)
    return numerical, categorical


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= HTML_ROWS:
        return frame
    return frame.sample(n=HTML_ROWS, random_state=0).reset_index(drop=True)
