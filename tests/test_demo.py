"""`make demo` is the first command a user runs: its quick form runs end to end in the suite."""

from __future__ import annotations

from denoiselab.cli import main


def test_quick_demo_writes_its_summary_runs_and_pages(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "## 2D swiss roll" in summary and "## MNIST" in summary
    for run in ("swiss-roll", "mnist"):
        assert (out / run / "checkpoint.safetensors").is_file() and (out / run / "report.html").is_file()
    assert (out / "mnist" / "samples.png").is_file() and (out / "swiss-roll" / "chamfer.json").is_file()
    assert "[demo] report:" in capsys.readouterr().out
