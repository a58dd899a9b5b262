"""`medattn ablate`: a tiny BIIGMA grid over two seeds; finished cells are not rerun; Table 2 output."""
import csv

from medattn.cli import main
from medattn.config import load_config
from medattn.engine.ablation import cell_config, load_grid

TINY = ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=32", "train.epochs=1",
        "train.batch_size=16", "train.precision=fp32", "data.options.n_train=48", "data.options.n_val=24",
        "data.options.n_test=24"]


def _ablate(out, cells, capsys):
    args = ["ablate", "--grid", "biigma", "--config", "synthetic_biigma", "--seeds", "0", "1", "--out", str(out),
            "--quiet", "--cells", *cells]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    return capsys.readouterr().out


def test_grid_runs_resumes_and_writes_table_2(tmp_path, capsys):
    _ablate(tmp_path, ["baseline", "wo_indep"], capsys)
    md = (tmp_path / "ablation.md").read_text()
    for split in ("### test", "### test_shifted"):
        assert split in md
    assert "| Baseline |" in md and "| W/O L_indep |" in md and "± " in md
    rows = list(csv.DictReader(open(tmp_path / "ablation_runs.csv")))
    assert len(rows) == 2 * 2 * 2  # cells x seeds x splits
    assert {r["split"] for r in rows} == {"test", "test_shifted"}
    stamp = (tmp_path / "wo_indep" / "seed1" / "eval_test.json").stat().st_mtime_ns
    again = _ablate(tmp_path, ["baseline", "wo_indep"], capsys)
    assert again.count("done already, skipped") == 4 and "training ->" not in again
    assert (tmp_path / "wo_indep" / "seed1" / "eval_test.json").stat().st_mtime_ns == stamp


def test_cells_merge_their_options_over_the_base_model_options():
    base = load_config("synthetic_biigma", ["model.options.adapter=avgpool"])
    grid = load_grid("biigma")
    heads = cell_config(base, grid["heads_2"], seed=5)
    assert heads.seed == 5 and heads.model.options["num_heads"] == 2
    assert heads.model.options["adapter"] == "avgpool"  # kept from the base config
    baseline = cell_config(base, grid["baseline"], seed=0)
    assert baseline.model.name == "baseline" and "adapter" not in baseline.model.options
