"""`ffnmem compare-architectures`: a short real run, and one clear line for bad input."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, message", [
    (["--mask-rate", "1.5"], "outside (0, 1)"),
    (["--mask-rate", "0"], "outside (0, 1)"),
    (["--variants", "causal,sideways"], "unknown objective 'sideways'"),
    (["--variants", "causal-sometimes"], "unknown variant"),
    (["--variants", "causal,causal"], "listed twice"),
    (["--variants", "causal,encdec-rope"], "not rotary"),
    (["--preset", "huge"], "unknown architecture preset"),
])
def test_bad_input_is_one_line(cli, tmp_path, args, message):
    code, out, err = cli("compare-architectures", *args, "--out", tmp_path / "o")
    text = " ".join((out + err).split())
    assert code != 0 and message in text and "Traceback" not in text


def test_short_run_writes_report_and_plots(cli, tmp_path, one_thread):
    code, _out, err = cli("compare-architectures", "--variants", "causal,mlm-nopos,encdec-nopos", "--steps", "15", "--out", tmp_path / "o")
    assert code == 0, err
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| causal |" in report and "| mlm-nopos |" in report and "closed" in report and "| encdec-nopos |" in report
    assert len(list((tmp_path / "o").glob("*.png"))) == 5
    from ffnmem import Result

    res = Result.load(tmp_path / "o" / "result")
    assert {"position_probe", "attention_rank", "dla_by_layer"} <= set(res.tables)
    causal, mlm, encdec = (v["core_params"] for v in res.meta["per_variant"])
    assert causal == mlm and abs(encdec - causal) / causal < 0.01


def test_fair_run_writes_the_per_arm_analyses(cli, tmp_path, one_thread):
    import json

    args = ["compare-architectures", "--budget", "steps", "--seeds", "0", "--steps", "4", "--variants", "causal-nopos",
            "--out", tmp_path / "o"]
    code, _out, err = cli(*args)
    assert code == 0, err
    from ffnmem import Result

    res = Result.load(tmp_path / "o" / "result")
    assert {"position_probe", "attention_rank", "dla_by_layer", "capacity"} <= set(res.tables)
    report = (tmp_path / "o" / "fair.md").read_text()
    assert "## Position probe" in report and "| steps | causal-nopos | random | 2 |" in report
    assert "## Direct effect" in report and "## Attention effective rank" in report and "## Bits stored" in report
    assert (tmp_path / "o" / "position_probe.png").exists()
    unit = next((tmp_path / "o" / "units").rglob("unit.json"))
    unit.write_text(json.dumps({k: v for k, v in json.loads(unit.read_text()).items() if k != "analyses"}))
    code, out2, err2 = cli(*args)  # a unit made without the analyses is not silently reused
    assert code != 0 and "without the per-arm analyses" in " ".join((out2 + err2).split())
    code, _out, err = cli(*args, "--no-analyses")
    assert code == 0, err
    assert "## Position probe" not in (tmp_path / "o" / "fair.md").read_text()
