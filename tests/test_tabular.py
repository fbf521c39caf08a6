"""The shared CSV reader (``modelrank.tabular.read_csv_file``): what it reads, how often, and what it refuses."""

import gzip

import pytest

import modelrank.tabular as tabular
from modelrank.errors import InvalidInputError
from modelrank.tabular import read_csv_file


@pytest.fixture
def scans(monkeypatch):
    """The files the row-length scan read (it takes longer than pandas' own read of a big file)."""
    seen = []
    scan = tabular._ragged_line

    def counted(path):
        seen.append(path.name)
        return scan(path)

    monkeypatch.setattr(tabular, "_ragged_line", counted)
    return seen


def test_a_table_without_a_blank_last_cell_is_read_without_the_scan(tmp_path, scans):
    plain, packed = tmp_path / "t.csv", tmp_path / "t.csv.gz"
    text = "dataset, model,accuracy\n" + "".join(f"d{i % 3},m{i},0.{i}\n" for i in range(1, 10))
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        frame = read_csv_file(path)
        assert list(frame.columns) == ["dataset", "model", "accuracy"] and len(frame) == 9
    assert scans == []


@pytest.mark.parametrize("rows, options, line", [
    ("d1,m1,0.5\nd1,m2\n", {}, 3),                                      # short: blank last cell
    ("d1,m1,0.5\nd1,m2\n", {"dtype": str, "keep_default_na": False}, 3),  # short, filled with "" not NaN
    ("d1,m1,0.5,\nd1,m2,0.6,\n", {}, 2),                                # long first row: an index column
    ("d1,m1,0.5\nd1,m2,\n", {}, None),                                  # a blank cell is no short row
])
def test_a_possibly_ragged_table_is_scanned(tmp_path, scans, rows, options, line):
    path = tmp_path / "t.csv"
    path.write_text("dataset,model,accuracy\n" + rows)
    if line is None:
        assert read_csv_file(path, **options)["accuracy"].isna().tolist() == [False, True]
    else:
        with pytest.raises(InvalidInputError, match=f"line {line} has"):
            read_csv_file(path, **options)
    assert scans == ["t.csv"]


def test_a_longer_row_further_down_is_refused_by_pandas(tmp_path, scans):
    path = tmp_path / "t.csv"
    path.write_text("dataset,model,accuracy\nd1,m1,0.5\nd1,m2,0.6,7\n")
    with pytest.raises(InvalidInputError, match="Expected 3 fields in line 3, saw 4"):
        read_csv_file(path)


def test_an_index_column_of_names_is_read_as_given(tmp_path):
    """``--task-meta``/``--model-meta`` files name their rows in the first column: a task called NA is a name."""
    path = tmp_path / "meta.csv"
    path.write_text("task,classes,domain\nNA,10,NA\nnull,5,sketch\n")
    frame = read_csv_file(path, index_col=0)
    assert frame.index.tolist() == ["NA", "null"]
    assert frame["domain"].isna().tolist() == [True, False]  # other columns keep pandas' missing values
    assert frame["classes"].tolist() == [10, 5]
