"""Latency predictor: trained on real measurements and on a known function, held-out error, save/load."""
from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import List

import pytest
import torch

from fairseq_shiftadd.latency import (
    CSV_FIELDS,
    LatencyMeasurement,
    LatencyRecord,
    TimingProtocol,
    collect_latency_dataset,
    read_latency_csv,
)
from fairseq_shiftadd.latency.cli import dataset_main, train_main
from fairseq_shiftadd.latency.predictor import LatencyPredictor, kendall_tau, mape, train_predictor
from fairseq_shiftadd.space import get_space, largest, predictor_features, sample, smallest

TINY = get_space("tiny")


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_latency(features: List[float]) -> float:
    """A known latency function of the features: 2 ms + sum_i (1 + i mod 5) * x_i ms."""
    return 2.0 + sum((1 + i % 5) * x for i, x in enumerate(features))


def write_synthetic(path: Path, n: int, seed: int = 0) -> None:
    """``n`` distinct tiny subnets whose total latency is :func:`linear_latency` of their features (30 % encoder)."""
    rng = random.Random(seed)
    subs = list(dict.fromkeys(sample(TINY, rng) for _ in range(3 * n)))[:n]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for sub in subs:
            total = linear_latency(predictor_features(TINY, sub))
            m = LatencyMeasurement(encoder_ms=0.3 * total, decoder_ms=0.7 * total)
            writer.writerow(LatencyRecord("tiny", sub, m, "synthetic", 30, 30, 1).to_row())


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "lat.csv"
    write_synthetic(path, 200)
    return path


@pytest.fixture(scope="module")
def synthetic_trained(synthetic_csv: Path):
    return train_predictor(synthetic_csv, TINY, epochs=80, seed=0)


@pytest.fixture(scope="module")
def measured_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 tiny subnets really measured on this CPU (protocol shortened: 6 tokens, 1 warm-up, 3 runs)."""
    path = tmp_path_factory.mktemp("measured") / "lat.csv"
    collect_latency_dataset(TINY, 40, path, TimingProtocol(src_len=6, tgt_len=6, warmup=1, runs=3), seed=0,
                            vocab_size=100, progress=False)
    return path


def test_metrics_on_known_numbers() -> None:
    true = torch.tensor([10.0, 20.0, 40.0])
    assert mape(torch.tensor([11.0, 18.0, 40.0]), true) == pytest.approx(100 * (0.1 + 0.1 + 0.0) / 3)
    assert kendall_tau(torch.tensor([1.0, 2.0, 3.0]), true) == pytest.approx(1.0)
    assert kendall_tau(torch.tensor([3.0, 2.0, 1.0]), true) == pytest.approx(-1.0)
    assert kendall_tau(torch.tensor([1.0, 3.0, 2.0]), true) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant


def test_learns_a_known_linear_latency(synthetic_csv: Path, synthetic_trained) -> None:
    predictor, report = synthetic_trained
    assert (report.n_train, report.n_val, report.n_test) == (160, 20, 20)
    records = read_latency_csv(synthetic_csv)
    mean_ms = sum(r.measurement.total_ms for r in records) / len(records)
    baseline = 100 * sum(abs(mean_ms - r.measurement.total_ms) / r.measurement.total_ms for r in records) / len(records)
    assert report.test_kendall_tau > 0.8, report  # an untrained predictor: about 0
    assert report.test_mape < baseline / 4, (report, baseline)  # far better than predicting the mean
    unseen = [sample(TINY, random.Random(10_000 + i)) for i in range(50)]
    truth = torch.tensor([linear_latency(predictor_features(TINY, sub)) for sub in unseen])
    assert mape(torch.tensor(predictor.predict(unseen)), truth) < baseline / 4


def test_predicts_another_target(synthetic_csv: Path) -> None:
    predictor, report = train_predictor(synthetic_csv, TINY, epochs=40, seed=1, target="encoder_ms", transform="linear")
    assert report.target == "encoder_ms" and report.test_kendall_tau > 0.7, report
    sub = largest(TINY)
    assert predictor.predict([sub])[0] == pytest.approx(0.3 * linear_latency(predictor_features(TINY, sub)), rel=0.25)


def test_trains_on_real_measurements(measured_csv: Path) -> None:
    """No assertion on the timings themselves (the machine is shared): only on what training makes of them."""
    predictor, report = train_predictor(measured_csv, TINY, epochs=100, seed=0)
    assert (report.n_train, report.n_val, report.n_test) == (32, 4, 4)
    assert math.isfinite(report.test_mape) and math.isfinite(report.test_kendall_tau)  # no NaN from real timings
    records = read_latency_csv(measured_csv)
    measured = [r.measurement.total_ms for r in records]
    predicted = predictor.predict([r.subnet for r in records] + [smallest(TINY), largest(TINY)])
    assert all(min(measured) / 2 < p < 2 * max(measured) for p in predicted), (predicted, measured)


def test_save_load_round_trip(synthetic_trained, tmp_path: Path) -> None:
    predictor, _ = synthetic_trained
    path = tmp_path / "pred.pt"
    predictor.save(path)
    loaded = LatencyPredictor.load(path, TINY)
    assert loaded.space == TINY and loaded.transform == "log" and not loaded.training
    subs = [sample(TINY, random.Random(i)) for i in range(20)]
    assert loaded.predict(subs) == predictor.predict(subs)
    assert LatencyPredictor.load(path).predict(subs) == predictor.predict(subs)  # the space is stored too
    with pytest.raises(ValueError, match="trained for space 'tiny'.*not for space 'hat_wmt14'"):
        LatencyPredictor.load(path, get_space("hat_wmt14"))
    with pytest.raises(ValueError, match="not in allowed values"):
        loaded.predict([largest(get_space("hat_wmt14"))])


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        LatencyPredictor.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match="not a readable latency predictor"):
        LatencyPredictor.load(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"model": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a latency predictor file"):
        LatencyPredictor.load(other)
    truncated = tmp_path / "truncated.pt"
    LatencyPredictor(TINY).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable latency predictor"):
        LatencyPredictor.load(truncated)


def test_train_errors(synthetic_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="measured for space 'tiny', not 'hat_wmt14'"):
        train_predictor(synthetic_csv, get_space("hat_wmt14"), epochs=1)
    with pytest.raises(ValueError, match="split="):
        train_predictor(synthetic_csv, TINY, epochs=1, split=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="target='latency'"):
        train_predictor(synthetic_csv, TINY, epochs=1, target="latency")
    few = tmp_path / "few.csv"
    write_synthetic(few, 4)
    with pytest.raises(ValueError, match="4 measured subnets are too few"):
        train_predictor(few, TINY, epochs=1)


def test_console_scripts(tmp_path: Path, synthetic_csv: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lat.csv"
    dataset_main(["--space", "tiny", "--samples", "2", "--out", str(out), "--src-len", "4", "--tgt-len", "2",
                  "--warmup", "0", "--runs", "1", "--vocab-size", "20"])
    assert len(read_latency_csv(out)) == 2 and "2 subnets" in capsys.readouterr().out
    pred = tmp_path / "pred.pt"
    train_main(["--data", str(synthetic_csv), "--space", "tiny", "--out", str(pred), "--epochs", "3"])
    printed = capsys.readouterr().out
    assert "test MAPE" in printed and "Kendall tau" in printed
    assert LatencyPredictor.load(pred, TINY).predict([largest(TINY)])[0] > 0
    with pytest.raises(SystemExit):
        train_main(["--data", str(tmp_path / "missing.csv"), "--space", "tiny", "--out", str(pred)])
    assert "latency dataset not found" in capsys.readouterr().err
