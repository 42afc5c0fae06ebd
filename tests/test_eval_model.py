"""kinema.eval.model and `kinema eval-model` on a tiny random pipeline."""

import json
import math

import numpy as np
import pytest
from PIL import Image

import kinema.cli
from kinema.eval.gate import check
from kinema.eval.model import evaluate_model, load_prompts
from kinema.eval.shapes import judge
from kinema.media import tensor_to_frames
from kinema.pipeline import Pipeline
from kinema.tasks.t2v import text_to_video
from kinema.world.scene import prompt_set

from pipeline_utils import make_pipeline_dir


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    # 32x32: the Shapes judge needs min(H, W) >= 32 to be reliable
    return make_pipeline_dir(tmp_path_factory.mktemp("pipe") / "model", height=32, width=32)


def test_load_prompts(tmp_path):
    assert load_prompts("shapes:heldout", 3, seed=1) == prompt_set("heldout", 3, seed=1)
    f = tmp_path / "p.txt"
    f.write_text("# comment\na cat\n\nan empty black background\n")
    assert load_prompts(str(f), 3) == ["a cat", "an empty black background", "a cat"]
    for spec, message in [("shapes:test", "neither"), (str(tmp_path / "none.txt"), "neither")]:
        with pytest.raises(Exception, match=message):
            load_prompts(spec, 2)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(Exception, match="no prompts"):
        load_prompts(str(tmp_path / "empty.txt"), 2)


def test_evaluate_model_matches_judge_and_gate_and_ignores_batching(pipe_dir):
    pipe = Pipeline.load(pipe_dir)
    prompts = prompt_set("train", 2, seed=0) + ["a cat"]
    result = evaluate_model(pipe, prompts, n=3, seed=5, steps=2, batch_size=2)
    videos = text_to_video(pipe, prompts, seeds=5, steps=2)  # one batch: clip k from seed 5 + k
    assert [r.prompt for r in result.rows] == prompts and [r.seed for r in result.rows] == [5, 6, 7]
    for row, video in zip(result.rows, videos):
        frames = tensor_to_frames(video)
        if row.prompt == "a cat":
            assert row.judgement is None  # free text: no adherence check
        else:
            assert row.judgement.to_dict() == judge(frames, row.prompt).to_dict()
        assert row.gate.to_dict()["problems"] == check(frames).to_dict()["problems"]
    assert len(result.clips) == 3 and result.clips[0].shape == (5, 32, 32, 3)
    judged = [r.judgement.passed for r in result.rows[:2]]
    assert result.pass_rate == sum(judged) / 2
    rates = result.rates()
    assert set(rates) == {"presence", "shape", "motion", "consistency", "background", "overall", "gate_clean"}
    assert all(0 <= v <= 1 for v in rates.values())
    data = json.loads(json.dumps(result.to_dict()))
    assert len(data["clips"]) == 3 and data["rates"]["overall"] == result.pass_rate


def test_eval_model_cli_table_json_and_report(pipe_dir, tmp_path, capsys):
    args = ["eval-model", str(pipe_dir), "--prompts", "shapes:heldout", "--n", "2", "--steps", "2", "--seed", "3"]
    assert kinema.cli.main(args + ["--report", str(tmp_path / "r")]) == 0
    table = capsys.readouterr().out.splitlines()
    prompts = prompt_set("heldout", 2, seed=3)
    assert table[0].split() == ["rate", "value", "trials"]
    rates = {line.split()[0]: float(line.split()[1]) for line in table[1:8]}
    assert set(rates) >= {"presence", "overall", "gate_clean"} and all(0 <= v <= 1 for v in rates.values())
    rows = [line for line in table if line.strip().startswith(("0 ", "1 "))]
    assert [p in row for p, row in zip(prompts, rows)] == [True, True]
    page = (tmp_path / "r" / "index.html").read_text()
    assert all(p in page for p in prompts) and 'src="pass_rates.png"' in page and 'src="clips.png"' in page
    for name in ("pass_rates.png", "clips.png"):
        with Image.open(tmp_path / "r" / name) as image:
            assert image.format == "PNG"
    assert kinema.cli.main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["prompt"] for c in data["clips"]] == prompts and data["settings"]["prompt_set"] == "shapes:heldout"
    assert all(v is None or 0 <= v <= 1 for v in data["rates"].values())
    assert data["rates"]["overall"] == pytest.approx(rates["overall"], abs=1e-3)
    assert data["settings"]["guidance_interval"] is None  # this model guides every step
    assert kinema.cli.main(args + ["--json", "--guidance-interval", "0.8:1"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["guidance_interval"] == [0.8, 1.0]


def test_eval_model_bad_inputs_exit_2(pipe_dir, tmp_path, capsys):
    for args in (["eval-model", str(tmp_path / "nope"), "--prompts", "shapes:train", "--n", "1"],
                 ["eval-model", str(pipe_dir), "--prompts", "shapes:nope", "--n", "1"],
                 ["eval-model", str(pipe_dir), "--prompts", "shapes:train", "--n", "1", "--sampler", "plms"]):
        assert kinema.cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("kinema: error:") and len(err.strip().splitlines()) == 1
