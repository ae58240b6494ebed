"""Every malformed input is named with its reason; good entries in the same file stay good."""

from __future__ import annotations

import pytest
from malformed import write_corpus  # tests/crystal is on sys.path (pytest rootdir mode)

from matgen.crystal import ValidationOptions, read_crystals, validate_crystals


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


def _max_atoms(args):
    return int(args[args.index("--max-atoms") + 1]) if "--max-atoms" in args else None


def test_each_case_reports_its_reason(corpus):
    folder, cases = corpus
    for name, reason, args in cases:
        res = validate_crystals(folder / name, max_atoms=_max_atoms(args), workers=1)
        assert res.num_bad >= 1, f"{name}: expected a bad entry"
        assert res.num_good + res.num_bad == res.num_entries, name
        texts = [str(e) for e in res.errors]
        assert any(reason in t for t in texts), f"{name}: {reason!r} not in {texts}"
        for e in res.errors:
            assert e.entry.startswith(name), f"{name}: entry {e.entry!r} does not name the file"
            assert "\n" not in e.reason and "Traceback" not in e.reason


def test_good_rows_next_to_bad_ones_are_kept(corpus):
    folder, _ = corpus
    res = validate_crystals(folder / "duplicate_ids.csv", workers=1)
    assert (res.num_good, res.num_bad) == (1, 1)
    assert res.batch.ids == ["mp-1"]
    res = validate_crystals(folder / "xyz_left_handed.extxyz", workers=1)
    assert res.batch.ids == ["ok"] and res.errors[0].entry == "xyz_left_handed.extxyz:frame 2 (lh)"


def test_loader_keeps_nan_label_as_missing(corpus):
    folder, _ = corpus
    res = read_crystals(folder / "nan_label.csv", workers=1)
    assert res.num_good == 2 and res.num_bad == 0
    assert res.nan_labels == {"band_gap": 1}
    gap = res.batch.properties["band_gap"]
    assert gap[0].item() == 1.0 and gap[1].isnan()
    # strict mode names the property
    strict = read_crystals(
        folder / "nan_label.csv", options=ValidationOptions(allow_nan_labels=False), workers=1
    )
    assert [str(e) for e in strict.errors] == [
        "nan_label.csv:row 2 (mp-2): NaN in property band_gap"
    ]


def test_whole_corpus_as_a_folder(corpus):
    folder, cases = corpus
    (folder / "README.md").write_text("notes about this corpus\n")
    res = validate_crystals(folder, workers=1)
    bad_files = {e.entry.split(":")[0] for e in res.errors}
    expected = {name for name, _, args in cases if not args}
    assert expected <= bad_files
    assert "mystery.dat" in bad_files
    assert res.ignored_files == ["README.md"]
    assert res.num_good + res.num_bad == res.num_entries


def test_multiprocess_parsing_matches_serial(corpus, tmp_path):
    from malformed import GOOD, csv_text

    rows = [(f"mp-{i}", str(i), GOOD if i % 50 else "junk") for i in range(300)]
    p = tmp_path / "many.csv"
    p.write_text(csv_text(rows))
    a = validate_crystals(p, workers=1)
    b = validate_crystals(p, workers=2)
    assert [str(e) for e in a.errors] == [str(e) for e in b.errors]
    assert a.batch.ids == b.batch.ids and a.num_bad == 6


@pytest.mark.slow
def test_pool_without_fork_when_threads_exist(tmp_path):
    """With another thread alive the pool avoids fork (forkserver / spawn): same results."""
    import threading

    from malformed import GOOD, csv_text

    rows = [(f"mp-{i}", str(i), GOOD if i % 50 else "junk") for i in range(300)]
    p = tmp_path / "many.csv"
    p.write_text(csv_text(rows))
    a = validate_crystals(p, workers=1)

    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        c = validate_crystals(p, workers=2)
    finally:
        stop.set()
    assert c.batch.ids == a.batch.ids and [str(e) for e in c.errors] == [str(e) for e in a.errors]
