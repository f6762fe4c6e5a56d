"""The real thing: pretrained MiniLM on the real SST-2 files (skipped when they are absent)."""

import pytest

from lorabench import load_config, run

from .conftest import require_real_data


@pytest.mark.slow
def test_minilm_lora_learns_sst2(tmp_path):
    data = require_real_data()
    cfg = load_config("configs/sst2-minilm.yaml", [f"data.dir={data}", "steps=120", "eval_every=120",
                                                    "data.n_train=4000", "data.n_eval=300", "save_adapter=false"])
    result = run(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert result["status"] == "ok" and result["trainable_params"] == 338_690
    # 1,920 training sentences already take pretrained MiniLM well past chance (0.5)
    assert result["final"]["accuracy"] >= 0.75, result["final"]
    assert len(result["provenance"]["data"]["validation"]["sha256"]) == 64
    # the test split: evaluated once after training, at the same setting, on all its 1,821 rows
    test = result["held_out"]["test"]
    assert test["accuracy"] >= 0.75 and test["accuracy_ci"][0] < test["accuracy"] < test["accuracy_ci"][1]
    assert len((tmp_path / "run" / "predictions.test.jsonl").read_text().splitlines()) == 1821
    assert result["counts"]["label_counts"]["test"] == {0: 912, 1: 909}
