"""cifar.bench runs end to end on tiny settings; the report pipeline's images look like the report's.

These check that the benchmark works, not how fast anything is.
"""

import json

import numpy as np
import torch

from cifar import bench


def test_bench_end_to_end_prints_a_markdown_table(cifar_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--models", "cnn", "--batch-sizes", "4", "--seconds", "0.2", "--warmup", "1", "--device", "cpu",
            "--data-dir", str(cifar_root), "--json", str(out)]
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    assert "| model | batch | project img/s | report img/s | ratio |" in text
    row = next(line for line in text.splitlines() if line.startswith("| cnn | 4 |"))
    assert row.rstrip().endswith("× |")
    assert "- hardware: " in text and f"torch {torch.__version__}" in text
    saved = json.loads(out.read_text())
    (result,) = saved["results"]
    assert result["model"] == "cnn" and result["batch_size"] == 4
    assert result["project"] > 0 and result["report"] > 0
    assert saved["data"].endswith("cifar-10-batches-py") and saved["threads"] >= 1


def test_missing_data_falls_back_to_random_images(tmp_path, capsys):
    images, labels, source = bench.load_images(str(tmp_path / "nowhere"), n_fake=64)
    assert images.shape == (64, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (64,) and labels.min() >= 0 and labels.max() <= 9
    assert source.startswith("random")
    assert "random images instead" in capsys.readouterr().err


def test_report_pipeline_images_are_normalised_crops():
    torch.manual_seed(0)
    images = np.full((8, 32, 32, 3), 255, dtype=np.uint8)
    ds = bench.ReportDataset(images, np.arange(8) % 10, bench.report_transform())
    crops = torch.stack([ds[i][0] for i in range(len(ds))])
    assert crops.shape == (8, 3, 32, 32) and crops.dtype == torch.float32
    # White pixels map to 1, the zero padding to -1: Normalize((0.5,)*3, (0.5,)*3) after ToTensor.
    assert set(crops.unique().tolist()) <= {-1.0, 1.0}
    assert (crops == -1).any()  # 8 random crops of a padded image: some padding shows (all-centre odds 1/81**8)
    assert ds[3][1] == 3 and isinstance(ds[3][1], int)


def test_default_batch_sizes_are_the_recipes():
    from cifar.config import RECIPES

    assert bench.default_batch_sizes("cnn") == [32, RECIPES["fast"]["cnn"]["batch_size"]]
    assert bench.default_batch_sizes("resnet18")[0] == 128


def test_markdown_table_rows_and_ratio():
    table = bench.markdown_table([bench.Result("cnn", 32, 1000.0, 125.0)])
    assert table.splitlines()[2] == "| cnn | 32 | 1,000 | 125 | 8.0× |"
