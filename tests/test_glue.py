"""GLUE registry and loaders: split sizes, label counts, quoting, BOM, sources."""

import gzip
import hashlib
import importlib.resources
import re
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from lrdist_jax.data import (
    GLUE_TASKS,
    VENDORED_TASKS,
    DataUnavailableError,
    Examples,
    get_task,
    load_glue,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared glue_data folder absent")

# Published GLUE split sizes (train, dev) and label counts from glue_data/SOURCES.md.
SIZES = {
    "sst2": (67349, 872),
    "mrpc": (3668, 408),
    "cola": (8551, 1043),
    "rte": (2490, 277),
    "stsb": (5749, 1500),
    "wnli": (635, 71),
}
LABEL_COUNTS = {
    ("sst2", "train"): {0: 29780, 1: 37569},
    ("sst2", "validation"): {0: 428, 1: 444},
    ("mrpc", "train"): {0: 1194, 1: 2474},
    ("mrpc", "validation"): {0: 129, 1: 279},
    ("cola", "train"): {0: 2528, 1: 6023},
    ("cola", "validation"): {0: 322, 1: 721},
    ("rte", "train"): {0: 1249, 1: 1241},  # entailment, not_entailment
    ("rte", "validation"): {0: 146, 1: 131},
    ("wnli", "train"): {0: 323, 1: 312},
    ("wnli", "validation"): {0: 40, 1: 31},
}


@pytest.mark.parametrize("task", sorted(SIZES))
def test_vendored_split_sizes(task):
    train, dev = load_glue(task, "train"), load_glue(task, "validation")
    assert (len(train), len(dev)) == SIZES[task]
    spec = get_task(task)
    for ex in (train, dev):
        assert (ex.text_b is not None) == spec.is_pair
        assert all(isinstance(s, str) and s for s in ex.text_a[:50])
        assert ex.labels.dtype == (np.float32 if spec.is_regression else np.int32)


@pytest.mark.parametrize("key", sorted(LABEL_COUNTS))
def test_label_counts(key):
    ex = load_glue(*key)
    values, counts = np.unique(ex.labels, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == LABEL_COUNTS[key]


def test_stsb_scores_are_float_in_range():
    ex = load_glue("stsb", "dev")
    assert ex.labels.min() == 0.0 and ex.labels.max() == 5.0
    assert len(np.unique(ex.labels)) > 50  # real-valued, not class ids
    assert ex.text_a[0] == "A man with a hard hat is dancing."
    assert ex.labels[0] == pytest.approx(5.0)


def test_bare_quotes_and_bom_mrpc():
    ex = load_glue("mrpc", "train")
    assert ex.text_a[0] == (
        'Amrozi accused his brother , whom he called " the witness " , of deliberately '
        "distorting his evidence ."
    )
    assert ex.text_b[0].startswith('Referring to him as only " the witness "')
    assert ex.labels[0] == 1  # header "\ufeffQuality" was matched despite the BOM


def test_quote_row_parsed_without_merging(tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    rows = ["sentence\tlabel\n", 'a " lone quote opens here \t1\n', "next row\t0\n", 'x "y" z\t1\n']
    (folder / "train.tsv").write_text("".join(rows), encoding="utf-8")
    ex = load_glue("sst2", "train", data_dir=tmp_path)
    assert ex.text_a == ['a " lone quote opens here ', "next row", 'x "y" z']
    np.testing.assert_array_equal(ex.labels, [1, 0, 1])


def test_cola_has_no_header():
    ex = load_glue("cola", "train")
    assert ex.text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert ex.labels[0] == 1


@needs_shared
@pytest.mark.parametrize("task", ["mrpc", "cola", "rte", "stsb", "wnli", "sst2"])
def test_vendored_equals_shared_folder(task):
    for split in ("train", "validation"):
        a = load_glue(task, split)
        b = load_glue(task, split, data_dir=SHARED)
        assert a.text_a == b.text_a and a.text_b == b.text_b
        np.testing.assert_array_equal(a.labels, b.labels)


@needs_shared
def test_vendored_bytes_match_sources_md():
    root = importlib.resources.files("lrdist_jax.data") / "glue_data"
    sources = (root / "SOURCES.md").read_text(encoding="utf-8")
    for task in VENDORED_TASKS:
        folder = get_task(task).folder
        for split in ("train", "dev"):
            raw = gzip.decompress((root / folder / f"{split}.tsv.gz").read_bytes())
            assert raw == (SHARED / folder / f"{split}.tsv").read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            assert re.search(rf"\| {folder}/{split}\.tsv \|.*`{digest}`", sources)


def test_gzipped_data_dir(tmp_path):
    root = importlib.resources.files("lrdist_jax.data") / "glue_data"
    (tmp_path / "WNLI").mkdir()
    (tmp_path / "WNLI" / "dev.tsv.gz").write_bytes((root / "WNLI" / "dev.tsv.gz").read_bytes())
    ex = load_glue("wnli", "dev", data_dir=tmp_path)
    assert len(ex) == 71


def test_missing_file_in_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RTE/train\.tsv.*glue_data layout"):
        load_glue("rte", "train", data_dir=tmp_path)


def test_sst2_train_loads_fast():
    load_glue("sst2", "validation")  # warm imports
    t0 = time.perf_counter()
    load_glue("sst2", "train")
    assert time.perf_counter() - t0 < 1.0


def test_registry():
    assert set(GLUE_TASKS) == {"sst2", "mrpc", "cola", "rte", "stsb", "wnli", "qnli", "qqp", "mnli"}
    assert get_task("SST-2") is GLUE_TASKS["sst2"] and get_task("sts_b").num_labels == 1
    assert get_task("mnli").num_labels == 3 and get_task("mnli").dev_split == "validation_matched"
    assert get_task("qqp").dev_limit == 10000
    assert "f1" in get_task("mrpc").metrics and "mcc" in get_task("cola").metrics
    assert set(get_task("stsb").metrics) == {"pearson", "spearman"}
    for spec in GLUE_TASKS.values():
        assert spec.is_regression or "accuracy" in spec.metrics
        assert spec.is_regression or len(spec.label_names) == spec.num_labels
    with pytest.raises(ValueError, match="valid names: sst2, mrpc"):
        get_task("imdb")


def test_bad_split_and_source():
    with pytest.raises(ValueError, match="test splits are unlabelled"):
        load_glue("sst2", "test")
    with pytest.raises(ValueError, match="Unknown source"):
        load_glue("sst2", "train", source="s3")
    with pytest.raises(ValueError, match="needs data_dir"):
        load_glue("sst2", "train", source="tsv")


def test_not_vendored_raises_clear_error(monkeypatch):
    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("no network")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DataUnavailableError, match=r"'qnli' \(not vendored.*--data-dir"):
        load_glue("qnli", "train")
    with pytest.raises(DataUnavailableError, match="not vendored"):
        load_glue("mnli", "train", source="vendored")


def test_hf_source_conversion_and_qqp_cap(monkeypatch):
    calls = []
    fake = types.ModuleType("datasets")

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        n = 10005
        return {
            "question1": [f"q{i}" for i in range(n)],
            "question2": [f"r{i}" for i in range(n)],
            "label": [i % 2 for i in range(n)],
        }

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    ex = load_glue("qqp", "validation")
    assert calls == [("nyu-mll/glue", "qqp", "validation")]
    assert len(ex) == 10000 and ex.text_b[-1] == "r9999" and ex.labels.dtype == np.int32


def test_qqp_cap_and_mnli_dev_file_from_data_dir(tmp_path):
    (tmp_path / "QQP").mkdir()
    lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
    lines += [f"{i}\t1\t2\tq{i}\tr{i}\t{i % 2}" for i in range(10003)]
    lines.insert(5, "broken\trow")  # QQP's malformed rows are skipped
    (tmp_path / "QQP" / "dev.tsv").write_text("\n".join(lines) + "\n")
    ex = load_glue("qqp", "dev", data_dir=tmp_path)
    assert len(ex) == 10000 and ex.text_a[:2] == ["q0", "q1"]

    (tmp_path / "MNLI").mkdir()
    hdr = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    rows = [hdr, "0\t1\t2\tg\tp a\th a\tneutral\tneutral", "1\t1\t2\tg\tp b\th b\tx\tcontradiction"]
    (tmp_path / "MNLI" / "dev_matched.tsv").write_text("\n".join(rows) + "\n")
    ex = load_glue("mnli", "validation_matched", data_dir=tmp_path)
    np.testing.assert_array_equal(ex.labels, [1, 2])
    assert ex.text_b == ["h a", "h b"]


def test_bad_label_raises(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n"
    )
    with pytest.raises(ValueError, match="cannot parse label 'maybe'"):
        load_glue("rte", "dev", data_dir=tmp_path)


def test_examples_subset_and_sample():
    ex = load_glue("rte", "dev")
    sub = ex.subset([5, 2])
    assert sub.text_a == [ex.text_a[5], ex.text_a[2]] and sub.text_b[1] == ex.text_b[2]
    np.testing.assert_array_equal(sub.labels, ex.labels[[5, 2]])
    s1, s2, s3 = ex.sample(50, seed=1), ex.sample(50, seed=1), ex.sample(50, seed=2)
    assert len(s1) == 50 and s1.text_a == s2.text_a and s1.text_a != s3.text_a
    pos = [ex.text_a.index(t) for t in s1.text_a]
    assert pos == sorted(pos)  # original order kept
    assert len(ex.sample(10_000)) == len(ex)
    assert ex.head(3).text_a == ex.text_a[:3]
    with pytest.raises(ValueError, match="labels must have shape"):
        Examples(["a"], None, np.zeros(2, np.int32))
