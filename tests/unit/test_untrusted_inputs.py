"""Files from someone else: checkpoints, run folders, claim SQL. Nothing they hold may run or write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ffnmem.batch import runner as B
from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.methods.training import TrainConfig, train
from ffnmem.store import catalog as C

FACTS = FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1)
CFG = TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=3, batch_size=4, warmup=1,
                  checkpoint_every=2, eval_every=3, seed=0)


class _Payload:
    """Unpickling this creates ``marker``: what a crafted checkpoint would do with real code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_checkpoint_state_is_refused_never_unpickled(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    step = run / "checkpoints" / "step-000009"
    step.mkdir(parents=True)
    torch.save({"optimizer": _Payload(marker)}, step / "state.pt")
    with pytest.raises(BadInput, match="pickled state.pt.*never loads") as exc:
        train(generate(FACTS), CFG, run, device="cpu", progress=False)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


def test_train_cli_on_a_crafted_run_folder_is_one_line(tmp_path, cli):
    marker = tmp_path / "pwned"
    step = tmp_path / "run" / "checkpoints" / "step-000001"
    step.mkdir(parents=True)
    torch.save(_Payload(marker), step / "state.pt")
    r = cli("train", "-o", tmp_path / "run", "--steps", "2", "--device", "cpu")
    assert r.returncode == 2 and "did not write" in r.stderr  # a folder ffnmem did not write: refused
    r = cli("train", "-o", tmp_path / "run", "--steps", "2", "--device", "cpu", "--force")  # adopted anyway
    assert r.returncode != 0 and "never loads" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_checkpoints_hold_no_pickle(tmp_path):
    train(generate(FACTS), CFG, tmp_path / "r", device="cpu", progress=False)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".safetensors", ".txt", ".model", ""}, files
    for p in files:
        assert not p.read_bytes().startswith(b"\x80"), p  # pickle protocol 2+ header


# --- run folders and SQL ------------------------------------------------------------------------

FACTS_FILE = Path(__file__).resolve().parents[2] / "data" / "facts" / "capital_of.jsonl"
RECALL = f"""name = "u"
models = ["tiny-2l"]
[data]
facts = "{FACTS_FILE}"
limit_per_relation = 3
[[analysis]]
name = "recall"
scoring = "sequence"
"""


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """One finished tiny recall run; tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("run")
    (root / "b.toml").write_text(RECALL)
    return B.run_batch(B.load_batch(root / "b.toml"), root / "run", progress=False)


@pytest.fixture
def run(run_folder, tmp_path):
    return Path(shutil.copytree(run_folder, tmp_path / "run"))


@pytest.mark.parametrize("sql", ["COPY (SELECT 1) TO '{out}'", "SELECT * FROM read_text('/etc/passwd')",
                                 "ATTACH '{out}' AS x", "SET enable_external_access = true; COPY units TO '{out}'"])
def test_sql_on_a_run_cannot_read_or_write_files(run, tmp_path, sql):
    out = tmp_path / "written"
    with pytest.raises(BadInput) as exc:
        C.query(run, sql.format(out=out))
    assert "\n" not in str(exc.value) and ("may not read or write files" in str(exc.value) or "locked" in str(exc.value))
    assert not out.exists()
    assert C.query(run, "SELECT count(*) AS n FROM recall_facts")["n"][0] == 3  # tables still readable


def test_crafted_analysis_name_in_run_json_is_refused(run, tmp_path):
    out = tmp_path / "written"
    manifest = json.loads((run / "run.json").read_text())
    manifest["units"][0]["analysis"] = f"x_t\" AS SELECT 1; COPY (SELECT 1) TO '{out}'; --"
    (run / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="invalid id or analysis name"):
        C.query(run, "SELECT 1")
    assert not out.exists()


def test_unit_id_cannot_leave_the_run_folder(run):
    manifest = json.loads((run / "run.json").read_text())
    manifest["units"][0]["unit_id"] = "../../elsewhere"
    (run / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="invalid id"):
        C.read_manifest(run)


def test_damaged_catalogue_says_to_rerun(run):
    (run / "catalog.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(BadInput, match=r"catalog.parquet is damaged .*rerun the batch .*to rebuild it") as exc:
        C.query(run, "SELECT * FROM units")
    assert "\n" not in str(exc.value)
    B.run_batch(_batch_of(run), run, progress=False)
    assert C.query(run, "SELECT count(*) AS n FROM units WHERE status = 'done'")["n"][0] == 1


def _batch_of(run: Path):
    manifest = json.loads((run / "run.json").read_text())
    return B.load_batch(manifest["batch_file"])


CLAIM = """
[[claim]]
id = "x"
statement = "s"
paper = "p"
data = "d"
statistic = "st"
null = "n"
test = "paired"
effect = 0
sql = "SELECT {select} AS value, 0 AS null FROM recall_facts"
[claim.control]
description = "c"
sql = "SELECT rank AS value, rank AS null FROM recall_facts"
"""


@pytest.mark.parametrize("select, shown", [("NULL", "NULL/NaN"), ("CAST('nan' AS DOUBLE)", "NULL/NaN"),
                                           ("'high'", "gave no value")])
def test_claim_query_without_numbers_is_an_error_row_not_a_crash(run, tmp_path, select, shown):
    from ffnmem.batch.claims import claims_table, run_dir

    probes = tmp_path / "claims"
    probes.mkdir()
    (probes / "x.toml").write_text(RECALL + CLAIM.replace("{select}", select))
    batch = B.load_batch(probes / "x.toml")
    shutil.copytree(run, run_dir(batch, tmp_path / "runs"))  # the same units: the run of this batch
    (row,) = claims_table(probes, tmp_path / "runs")
    assert row.status == "ERROR" and shown in row.error and "\n" not in row.error


# --- non-finite numbers -------------------------------------------------------------------------

def _param(wb, name: str) -> torch.Tensor:
    """A parameter by its short name (the bridge nests each module in ``_original_component``)."""
    named = wb.bridge.original_model.named_parameters()
    return {n.replace("._original_component", ""): p for n, p in named}[name]


def test_nan_weights_are_refused_at_load_naming_the_parameter(tmp_path):
    from ffnmem.core.errors import CorruptWeights
    from ffnmem.core.models import load_model, save_checkpoint

    wb = load_model("tiny-2l", device="cpu")
    with torch.no_grad():
        _param(wb, "layers.1.mlp.fc_out.weight")[3, 5] = float("nan")
    save_checkpoint(wb, tmp_path / "ckpt")
    with pytest.raises(CorruptWeights, match=r"parameter layers\.1\.mlp\.fc_out\.weight holds 1 NaN/inf values") as exc:
        load_model(str(tmp_path / "ckpt"), device="cpu")
    assert "\n" not in str(exc.value)


def test_recall_on_nan_weights_exits_non_zero_with_one_line(tmp_path, cli):
    from ffnmem.core.models import load_model, save_checkpoint

    wb = load_model("tiny-2l", device="cpu")
    with torch.no_grad():
        _param(wb, "layers.0.mlp.fc_in.weight").fill_(float("inf"))
    save_checkpoint(wb, tmp_path / "ckpt")
    r = cli("recall", "-m", tmp_path / "ckpt", "--device", "cpu", "--facts", FACTS_FILE, "--limit", "2", "--no-popularity",
            "-o", tmp_path / "out")
    assert r.returncode != 0 and "fc_in.weight holds" in r.stderr + r.stdout
    assert not (tmp_path / "out").exists()


def test_run_check_refuses_an_unknown_model_without_loading(tmp_path, cli):
    (tmp_path / "b.toml").write_text(RECALL.replace('"tiny-2l"', '"tiny-9l"'))
    r = cli("run", tmp_path / "b.toml", "--check")
    assert r.returncode != 0 and "b.toml:2: unknown model 'tiny-9l'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_hugging_face_folder_with_nan_weights_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from ffnmem.core.errors import CorruptWeights
    from ffnmem.core.models import byte_tokenizer, load_model

    cfg = LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "hf")
    byte_tokenizer().save_pretrained(tmp_path / "hf")
    with pytest.raises(CorruptWeights, match=r"parameter model\.layers\.0\.mlp\.down_proj\.weight holds 1 NaN/inf"):
        load_model(str(tmp_path / "hf"), device="cpu")
