"""`robust-sft report RUN_DIR` rebuilds every report artifact from the run directory; figure labels stay legible."""

import json
import re
import shutil

import pytest

import tests.fake_tasks  # noqa: F401  (registers the test tasks)
from robust_sft.cli import main
from robust_sft.experiment.runner import Experiment
from robust_sft.report import figures as report_figures
from robust_sft.report.html import markdown_to_html
from tests.test_experiment import mini_config
from tests.test_results import assert_report_matches_results

# Measured points of an earlier demo (its results.json, with 9 methods): stm@1.5, stm@2.5, stm@5 and self_output
# sit close, so their labels must not overlap.
DEMO_POINTS = {"gt": (3.908, -71.1, 0.5), "stm@1.5": (1.037, -3.8, 2.6), "stm@2.5": (1.090, -5.7, 2.5),
               "stm@5": (1.208, -7.0, 2.1), "self_output": (1.132, -10.8, 5.8), "rephrase": (1.157, -23.1, 7.6),
               "stm_random@2.5": (3.790, -63.7, 0.9), "stm_lowest@2.5": (7.002, -80.5, 3.4)}


# Pre-registered criteria as a config states them: judged from the run's own intervals.
REPORT_CRITERIA = [
    {"id": "G", "claim": "GT moves the target", "method": "gt", "quantity": "ti_pp", "holds_if": "estimate > -101"},
    {"id": "S", "claim": "STM forgets no more than GT", "method": "stm@500", "versus": "gt", "quantity": "bwt_pp",
     "holds_if": "lower > 1000", "requires": ["G"]},
]


def report_config(model_dir: str):
    return mini_config(model_dir, methods=["gt", "stm", "self_output"], taus=[500, 1e6], control_tau=500,
                       criteria=REPORT_CRITERIA)


def test_results_hold_points_intervals_and_the_judged_criteria(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    stm = results["methods"]["stm@500"]
    for quantity in ("ti_pp", "bwt_pp", "ti", "bwt"):
        lower, upper = stm["intervals"][quantity]["interval"]
        assert lower <= stm["intervals"][quantity]["estimate"] <= upper
    assert stm["intervals"]["ti"]["estimate"] == pytest.approx(stm["mean"]["ti"])
    assert set(stm["versus"]["gt"]) == {"ti_pp", "bwt_pp"} and "versus" not in results["methods"]["gt"]
    # per seed too: seed 0's points interval
    assert set(stm["seeds"]["0"]["intervals"]) == {"ti_pp", "bwt_pp", "ti", "bwt"}
    # G can only hold (a change is at least -100 points); S can only fail (at most +100): both outcomes reached
    assert [(c["id"], c["status"]) for c in results["criteria"]] == [("G", "held"), ("S", "not held")]
    assert json.loads((run_dir / "plan.json").read_text())["criteria"][1]["requires"] == ["G"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    run_dir = tmp_path_factory.mktemp("run")
    Experiment(report_config(tiny_model_dir), run_dir, progress=False).run()
    return run_dir


def test_run_writes_report_html_and_inspect_pages(run_dir):
    page = (run_dir / "report.html").read_text()
    figures = list((run_dir / "figures").glob("*.png"))
    assert "claims in this setting</h2>" in page and page.count("data:image/png;base64,") == len(figures) >= 3
    for link in re.findall(r'href="([^"]+)"', page):
        assert (run_dir / link).exists(), link
    assert {"inspect.html", "inspect/gt_tau1e+06.html"} <= set(re.findall(r'href="([^"]+)"', page))
    inspect = (run_dir / "inspect.html").read_text()
    assert '"files":["GT","Self-Output"]' in inspect and '"evidence":{"run":"mini"' in inspect


def test_report_md_reads_back_as_results_json(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert_report_matches_results((run_dir / "report.md").read_text(), results)


def test_report_rebuilds_from_the_run_directory_alone(run_dir, capsys):
    before = {name: (run_dir / name).read_text() for name in ("results.json", "report.md")}
    html_before = (run_dir / "report.html").read_text()
    for name in ("results.json", "report.md", "report.html", "inspect.html"):
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "figures")
    shutil.rmtree(run_dir / "inspect")
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert json.loads((run_dir / "results.json").read_text()) == json.loads(before["results.json"])
    assert (run_dir / "report.md").read_text() == before["report.md"]
    assert (run_dir / "report.html").read_text() == html_before
    assert (run_dir / "inspect" / "gt_tau1e+06.html").exists()
    for figure in ("ti_vs_bwt.png", "ppl_vs_bwt.png", "tau_sweep.png", "token_ppl_hist.png"):
        assert (run_dir / "figures" / figure).read_bytes()[:4] == b"\x89PNG"


def test_report_of_a_copied_run_directory_equals_the_original_without_loading_a_model(run_dir, tmp_path,
                                                                                       monkeypatch, capsys):
    import transformers

    import robust_sft.models.loading

    def no_model(*args, **kwargs):
        raise AssertionError("the report loaded a model")

    monkeypatch.setattr(robust_sft.models.loading, "load_model", no_model)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for name in ("results.json", "report.md", "report.html", "inspect.html"):
        (copy / name).unlink()
    shutil.rmtree(copy / "figures")
    (copy / "config.json").write_text("{}")  # the report reads what the run resolved (plan.json), not the config
    away = tmp_path / "away"
    run_dir.rename(away)  # the copy alone: nothing may be read from the original
    try:
        assert main(["report", str(copy)]) == 0
    finally:
        away.rename(run_dir)
    assert "report.html" in capsys.readouterr().out
    for name in ("results.json", "report.md", "inspect.html", "inspect/gt_tau1e+06.html"):
        assert (copy / name).read_bytes() == (run_dir / name).read_bytes(), name
    html = (copy / "report.html").read_text()
    assert str(run_dir) not in html and str(copy) not in html  # no path of either directory: equal as they are
    assert html == (run_dir / "report.html").read_text()


def test_a_run_from_before_plan_json_says_how_to_get_one_and_a_rerun_trains_nothing(run_dir, tmp_path,
                                                                                    tiny_model_dir, monkeypatch):
    import robust_sft.training.trainer as training
    from robust_sft.analysis.mechanism import analyze_run
    from robust_sft.core.rundir import NotARunError
    from robust_sft.report.write import write_report

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    (old / "plan.json").unlink()
    for read in (write_report, lambda d: analyze_run(d, progress=False)):
        with pytest.raises(NotARunError, match=f"no plan.json.*re-run `robust-sft run CONFIG --out {old}`"):
            read(old)
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: pytest.fail("a cached unit was trained again"))
    Experiment(report_config(tiny_model_dir), old, progress=False).run()
    assert json.loads((old / "plan.json").read_text()) == json.loads((run_dir / "plan.json").read_text())
    assert (old / "results.json").read_bytes() == (run_dir / "results.json").read_bytes()


def test_report_of_a_directory_that_is_no_run_says_what_is_missing(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "config.json" in capsys.readouterr().err


def test_markdown_tables_and_claims_become_html():
    out = markdown_to_html("# T\n\n| a | b |\n|---|---|\n| `x` | **held** |\n\ntext <b>\nmore\n")
    assert out == ("<h1>T</h1>\n<table><tr><th>a</th><th>b</th></tr>\n<tr><td><code>x</code></td>"
                   '<td><b class="held">held</b></td></tr>\n</table>\n<p>text &lt;b&gt; more</p>')


def test_ppl_vs_bwt_labels_do_not_overlap(tmp_path, monkeypatch):
    results = {"methods": {name: {"trained_token_ppl": x, "mean": {"bwt": y}, "std": {"bwt": sd}}
                           for name, (x, y, sd) in DEMO_POINTS.items()}}
    saved = []
    monkeypatch.setattr(report_figures, "save_figure", lambda fig, path: saved.append(fig))
    report_figures.plot_ppl_vs_bwt(results, tmp_path / "f.png")
    fig = saved[0]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(boxes) == set(DEMO_POINTS)
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), f"label {a!r} overlaps {b!r}"
        x, y = ax.transData.transform(DEMO_POINTS[a][:2])
        assert ax.get_window_extent(renderer).contains(x, y)
        for other, (ox, oy, _) in DEMO_POINTS.items():  # no label covers another method's point
            if other != a:
                assert not boxes[a].contains(*ax.transData.transform((ox, oy))), f"{a!r} hides the point {other!r}"


def test_every_method_in_a_legend_has_its_own_colour_and_marker():
    styles = [tuple(report_figures.method_style(i).values()) for i in range(50)]
    assert len(set(styles)) == 50
    assert report_figures.method_style(0) == {"color": "C0", "marker": "o"}  # a run of ten methods: as before


def test_tau_sweep_plots_stm_the_auto_tau_and_gt_at_the_configs_rate_only():
    def method(kind, tau, masked, lr_scale=1.0):
        return {"method": kind, "tau": tau, "masked_fraction": masked, "lr_scale": lr_scale}

    results = {"methods": {"gt": method("gt", None, 0.0), "gt_lr1e-04": method("gt", None, 0.0, 1 / 3),
                           "stm@2.5": method("stm", 2.5, 0.23), "stm@auto": method("stm_auto", 10.12, 0.14),
                           "stm@2.5_lr1e-04": method("stm", 2.5, 0.23, 1 / 3), "oracle": method("oracle", None, 0.0)}}
    points = report_figures.tau_sweep_points(results)
    assert [(p["method"], p["tau"]) for p in points] == [("gt", None), ("stm_auto", 10.12), ("stm", 2.5)]
    assert [report_figures.sweep_label(p) for p in points] == ["GT", "auto: tau 10.1", "tau 2.5"]
