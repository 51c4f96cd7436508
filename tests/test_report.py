"""Run report pages and the comparison page: content, self-containment, and a real headless browser."""

import base64
import json
import os
import re
import shutil

import pytest

from conftest import train_tiny
from denoiselab import runs as R
from denoiselab.cli import main
from denoiselab.presets import get_preset
from denoiselab.viz import compare, html, pagecheck, report

IMAGE_TINY = ["--set", "data.name=digits", "--set", "model.image_size=8", "--set", "model.patch=1",
              "--set", "model.ch=8", "--set", "model.ch_mult=[1]", "--set", "model.attn_resolutions=[]",
              "--set", "model.groups=4", "--set", "steps=20", "--set", "batch_size=16", "--set", "log_every=5",
              "--set", "preview_every=10", "--set", "sample.steps=5", "--set", "data.flip=true"]
POINTS_TINY = ["--set", "data.num=4096", "--set", "model.width=32", "--set", "model.depth=2",
               "--set", "batch_size=64", "--set", "log_every=10"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return train_tiny(tmp_path_factory, "report", "digits", "mnist", *IMAGE_TINY)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny 2D runs with different settings, each evaluated, in one folder (their only picture
    is the loss curve: the run pictures are tested above, and cost seconds each)."""
    root = tmp_path_factory.mktemp("runs")
    for i, (steps, lr) in enumerate([(60, "3e-3"), (20, "1e-3"), (40, "2e-3")]):
        out = root / f"roll{i}"
        assert main(["train", "--preset", "swiss-roll", "--out", str(out), "--quiet", "--no-pictures", *POINTS_TINY,
                     "--set", f"steps={steps}", "--set", f"lr={lr}", "--set", f"seed={i}"]) == 0
        assert main(["plot", "loss", str(out)]) == 0
        assert main(["evaluate", str(out), "--ref", "swiss-roll", "--num", "128", "--sampler", "ddim",
                     "--steps", "5"]) == 0
    (root / "notes").mkdir()  # not a run: ignored
    return root


def images_in(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_training_writes_a_self_contained_report(image_run):
    page = (image_run / "report.html").read_text()
    pictures = report.list_run_pictures(image_run)
    for name in ("loss.png", "dataset_summary.png", "samples.png", "reverse.gif", "forward.png", "forward.gif",
                 "histograms.png", "schedule_images.png", "previews/step0000010.png", "previews/step0000020.png"):
        assert name in pictures, name
    srcs = images_in(page)
    # Every picture of the run is on the page, inlined byte for byte: nothing is fetched.
    assert len(srcs) == len(pictures)
    inlined = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert all((image_run / p).read_bytes() in inlined for p in pictures)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    cfg = json.loads((image_run / "config.json").read_text())
    assert json.dumps(cfg, indent=2, sort_keys=True).replace('"', "&quot;") in page
    assert "step 10" in page and "step 20" in page and "KS distance to N(0, 1)" in page
    assert "No evaluation yet" in page


def test_dataset_summary_is_the_first_training_batch(image_run):
    import numpy as np
    from PIL import Image

    from denoiselab.config import apply_overrides
    from denoiselab.viz.images import auto_scale, tile_images

    cfg = apply_overrides(get_preset("mnist"), [a for a in IMAGE_TINY if a != "--set"])
    x, _ = R.build_data(cfg).batch(0, 64, cfg.train.seed)
    got = np.asarray(Image.open(image_run / "dataset_summary.png").convert("RGB"))
    assert np.array_equal(got, tile_images(x, 8, scale=auto_scale(8)))


def test_new_pictures_appear_without_code_changes(image_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(image_run, run)
    shutil.copy(run / "samples.png", run / "guidance.png")       # a known name gets its caption
    (run / "extra").mkdir()
    shutil.copy(run / "reverse.gif", run / "extra" / "my_edit.gif")  # an unknown one is listed generically
    page = report.write_run_report(run).read_text()
    assert "Classifier-free guidance sweep" in page
    assert "Other pictures" in page and "extra/my_edit.gif" in page
    assert len(images_in(page)) == len(report.list_run_pictures(run))


def test_metrics_with_floors_and_comparison_table(runs):
    page_path, pages = compare.write_comparison(runs)
    page = page_path.read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1])
    assert len(rows) == 3 and len(pages) == 3
    for i, row in enumerate(rows):
        name = f"roll{i}"
        assert f'href="{name}/report.html"' in row
        assert (runs / name / "report.html").is_file()
        rec = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()][-1]
        for metric, r in rec["evaluate"]["metrics"].items():
            # The sort key is the exact value; the floor is printed beside it.
            assert f'data-value="{r["value"]}"' in row, metric
            assert f"(floor {html.fmt(r['floor'])})" in row
        run_page = (runs / name / "report.html").read_text()
        assert "chamfer" in run_page and "floor (real vs real)" in run_page
    summary = report.read_run(runs / "roll0")
    losses = [json.loads(line) for line in (runs / "roll0" / "metrics.jsonl").read_text().splitlines()][:-1]
    assert summary.steps == 60 and summary.final_loss == losses[-1]["loss"]
    assert "loss curves" in page


def test_report_command(runs, image_run, tmp_path, capsys):
    assert main(["report", str(image_run), "--out", str(tmp_path / "one.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "one.html")
    assert main(["report", str(runs)]) == 0
    assert capsys.readouterr().out.strip() == str(runs / "report.html")
    for bad in (tmp_path / "missing", runs / "notes"):
        assert main(["report", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("denoiselab: error:") and len(err.splitlines()) == 1


def test_training_time_sums_resumed_segments(tmp_path):
    summary = report.RunSummary(tmp_path, {}, [{"step": s, "loss": 1.0, "time": t}
                                               for s, t in [(1, 1.0), (2, 2.5), (3, 0.5), (4, 1.5)]], [])
    assert summary.train_seconds == pytest.approx(4.0)
    assert summary.steps == 4


def test_checkpoint_header_counts_the_model(image_run):
    run = R.load_run(image_run)
    header = report.checkpoint_header(image_run / "checkpoint.safetensors")
    assert header["params"] == sum(v.numel() for v in run.net.state_dict().values())
    assert header["step"] == run.step == 20
    assert report.checkpoint_header(image_run / "config.json") == {}


def test_class_grid_caption(image_run):
    summary = report.read_run(image_run)
    assert "Class grid" not in report._caption(summary, "samples.png")
    summary.config["model"]["options"]["num_classes"] = 10
    assert "Class grid" in report._caption(summary, "samples.png")


def test_samples_caption_names_the_sampler_and_where_it_started(image_run):
    summary = report.read_run(image_run)
    summary.pictures["samples"] = {"sampler": "dpmpp-2m", "steps": 10, "nfe": 10, "start": "moments"}
    assert "DPMPP-2M, 10 steps (NFE 10), starting from the data's moments." in report._caption(summary, "samples.png")
    summary.pictures["samples"]["start"] = "gaussian"
    assert "moments" not in report._caption(summary, "samples.png")


# -- the checker itself must be able to fail ------------------------------------------------------

def test_sort_check_and_blank_check():
    import io

    import numpy as np
    from PIL import Image

    assert pagecheck._is_sorted([1, 2, "a", None], True) and pagecheck._is_sorted(["a", 2, 1, None], False)
    assert not pagecheck._is_sorted([2, 1, None], True) and not pagecheck._is_sorted([None, 1], True)

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    assert pagecheck.is_blank(png(np.full((8, 8, 3), 255, np.uint8)))
    assert not pagecheck.is_blank(png(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))


# -- a real browser -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    why = pagecheck.browser_missing()
    if why:
        if os.environ.get("DENOISELAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DENOISELAB_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(f"no headless browser: {why}")
    with pagecheck.Browser() as b:
        yield b


def test_pages_in_headless_chromium(browser, image_run, runs, tmp_path):
    run_check = browser.check(image_run / "report.html")
    assert run_check.console_errors == []
    assert len(run_check.images) == len(report.list_run_pictures(image_run))
    assert all(i["natural_width"] > 0 and not i["blank"] for i in run_check.images), run_check.images
    page_path, _ = compare.write_comparison(runs)
    cmp_check = browser.check(page_path, sort=True)
    assert cmp_check.ok, cmp_check
    for col in ("run", "steps", "training time (s)", "final loss", "chamfer", "MMD", "SWD"):
        assert cmp_check.sorts[col], col
    assert len(cmp_check.links) == 3
    for link in cmp_check.links:
        linked = browser.check(link["href"].removeprefix("file://"))
        assert linked.ok and linked.images, linked
    # The checker sees a broken picture, a blank one and a script error.
    white = base64.b64encode(open(image_run / "samples.png", "rb").read()).decode()
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="data:image/png;base64,AAAA"><img src="missing.png">'
                   f'<img src="data:image/png;base64,{white}" style="filter: brightness(0)">'
                   '<a href="nowhere.html">x</a><script>undefined_name()</script></body></html>')
    bad_check = browser.check(bad)
    assert not bad_check.ok
    assert [i["natural_width"] > 0 for i in bad_check.images] == [False, False, True]
    assert bad_check.images[2]["blank"] and bad_check.console_errors and not bad_check.links[0]["exists"]
