"""The committed notebooks are the source and carry their outputs: check that they stay normalised
(``scripts/run_notebooks.py``), so their diffs stay readable and every one opens with its results."""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_BYTES = 1_000_000


def _script():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_normalised(path):
    raw = path.read_text()
    nb = nbformat.reads(raw, as_version=4)
    assert nb.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                           "language_info": {"name": "python"}}, "notebook metadata is volatile"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "a cell not executed, or execution counts out of order (run scripts/run_notebooks.py)"
    for c in nb.cells:
        assert set(c.metadata) <= {"tags"}, f"volatile cell metadata {sorted(c.metadata)}"
    for c in code[1:]:  # the first code cell sets the parameters and may print nothing
        assert c.outputs, f"a code cell without outputs (execute with scripts/run_notebooks.py):\n{c.source[:80]}"
    for c in code:
        for o in c.outputs:
            assert o.output_type != "error", f"a cell failed:\n{c.source[:80]}"
            assert "transient" not in o
            assert "Traceback" not in o.get("text", ""), f"a traceback in the outputs:\n{c.source[:80]}"
            assert "it/s]" not in o.get("text", "") and "s/it]" not in o.get("text", ""), "a progress bar"
            if o.output_type == "execute_result":
                assert o.execution_count == c.execution_count
    assert len(raw.encode()) < MAX_BYTES, f"{path.name} is {len(raw.encode()):,} bytes"
    # the script's normalisation changes nothing: the file is what it would write
    assert nbformat.writes(_script().normalise(nbformat.reads(raw, as_version=4))) == raw.rstrip("\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_states_a_question_and_a_finding(path):
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "**Question.**" in first.source
    assert last.cell_type == "markdown" and last.source.startswith("## What we found")
    assert "filled in" not in last.source
    assert "QUICK = os.environ.get(\"FFNMEM_NOTEBOOK_QUICK\") == \"1\"" in next(c for c in nb.cells
                                                                                if c.cell_type == "code").source
    assert any(o.get("data", {}).get("image/png") or o.get("data", {}).get("text/html")
               for c in nb.cells if c.cell_type == "code" for o in c.outputs), "no figure or table shown"


def test_strip_progress_drops_bars_and_keeps_warnings():
    bars = ("Training:   0%|          | 0/47 [00:00<?, ?it/s]\rTraining:  2%|▏ | 1/47 [00:02<01:42,  2.23s/it]"
            "\rTraining: 48it [01:23,  1.66s/it]\n")
    text = "Triton not installed, using eager implementation.\n" + bars + "UserWarning: x\n"
    assert _script().strip_progress(text) == "Triton not installed, using eager implementation.\nUserWarning: x\n"


def test_normalise_strips_volatile_metadata_and_renumbers():
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "x"}, "language_info": {"name": "python", "version": "3.12.1"},
                   "widgets": {"state": {}}}
    a = nbformat.v4.new_code_cell("print(1)", execution_count=7,
                                  metadata={"execution": {"iopub.execute_input": "2026"}, "tags": ["t"]})
    a.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a"),
                 nbformat.v4.new_output("stream", name="stdout", text="b")]
    b = nbformat.v4.new_code_cell("1", execution_count=9)
    b.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=9)]
    b.outputs[0]["transient"] = {"display_id": "x"}
    nb.cells = [nbformat.v4.new_markdown_cell("# t", metadata={"ExecuteTime": {}}), a, b]
    out = json.loads(nbformat.writes(_script().normalise(nb)))
    assert out["metadata"] == {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                               "language_info": {"name": "python"}}
    assert [c["metadata"] for c in out["cells"]] == [{}, {"tags": ["t"]}, {}]
    assert [c.get("execution_count") for c in out["cells"][1:]] == [1, 2]
    (stream,) = out["cells"][1]["outputs"]  # consecutive stream outputs merged
    assert (stream["name"], "".join(stream["text"])) == ("stdout", "ab")
    assert out["cells"][2]["outputs"][0]["execution_count"] == 2 and "transient" not in out["cells"][2]["outputs"][0]
