"""Run configs (kinema.train.config) and the `kinema train` command's config handling."""

from __future__ import annotations

import dataclasses

import json

import pytest

import kinema.cli
from kinema.checkpoint import load_config
from kinema.config import ConfigError
from kinema.models.dit import PRESETS as DIT_PRESETS
from kinema.models.vae3d import VAE3DConfig
from kinema.train.config import RunConfig, apply_overrides, load_run_config, parse_value
from train_utils import CONFIGS, TINY_DIT, TINY_VAE


def test_tiny_configs_parse_and_resolve_to_the_preset_with_overrides():
    c = load_run_config(TINY_DIT)
    assert c.objective == "diffusion" and c.vae is None
    net = c.model.resolve()
    assert net == DIT_PRESETS["dit-tiny"].replace(in_channels=3, text_dim=384)
    assert c.optim.betas == (0.9, 0.99) and isinstance(c.optim.betas, tuple)
    assert c.data.sources[0].type == "shapes"
    v = load_run_config(TINY_VAE)
    assert v.objective == "vae" and v.model.resolve().latent_channels == 4


@pytest.mark.parametrize("name", ["default-vae", "default-vae-4x", "default-t2v", "t2v-dit-4x"])
def test_shipped_configs_resolve_to_the_geometry_their_comments_state(name):
    config = load_run_config(CONFIGS / f"{name}.toml")
    net = config.model.resolve()
    if name.startswith("default-vae"):
        factor = 4 if name.endswith("4x") else 8
        assert (net.spatial_factor, net.temporal_factor, net.latent_channels) == (factor, 4, 16)
        assert net.coarse_path and config.objective == "vae"
    else:
        assert config.objective == "diffusion" and net.cond_channels == net.in_channels + 1
        assert config.data.frames == 17 and (config.data.height, config.data.width) == (64, 64)
        # the VAE it names is the shipped one: (16, 5, 16, 16) latents
        vae = load_config(CONFIGS.parent / config.diffusion.vae, VAE3DConfig)
        assert (vae.latent_channels, vae.latent_frames(17), 64 // vae.spatial_factor) == (16, 5, 16)
        assert net.in_channels == vae.latent_channels
        if config.model.family == "dit":  # 5 x 4 x 4 = 80 tokens
            assert name == "t2v-dit-4x" and net.patch_size == (1, 4, 4)
        else:  # the default: a U-Net at the latents' resolution, attention at 8x8 and 4x4
            assert name == "default-t2v" and config.model.family == "unet3d"
            assert net.levels == 3 and tuple(net.attention_levels) == (1, 2)


def test_resolved_config_round_trips_through_json_and_names_every_model_field(tmp_path):
    c = load_run_config(TINY_DIT).resolved()
    assert c.model.preset is None and c.model.overrides["dim"] == DIT_PRESETS["dit-tiny"].dim
    f = tmp_path / "config.json"
    f.write_text(c.to_json())
    back = load_run_config(f)  # a run's own config.json is a valid input
    assert back == c and back.model.resolve() == c.model.resolve()


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("optim.lrr=1", "optim config: unknown key(s) lrr"),
        ("train.batchsize=3", "train config: unknown key(s) batchsize"),
        ("colour=1", "run config: unknown key(s) colour"),
        ("model.overrides.depthh=2", "dit config: unknown key(s) depthh"),
        ("model.preset='dit-huge'", "unknown dit preset 'dit-huge'"),
        ("train.steps='ten'", "train.steps: expected an integer"),
        ("train.batch_size=3", "batch_size 3 must be a multiple of grad_accum 2"),
        ("data.image_prob=2.0", "image_prob must be in [0, 1]"),
        ("diffusion.prediction='eps'", "eps prediction cannot learn at zero SNR"),
        ("vae.kl_weight=1.0", "a dit model trains with a [diffusion] section and no [vae] section"),
        ("data.cache='/tmp/c'", "needs 'items'"),
    ],
)
def test_bad_values_are_config_errors_that_name_the_key(assignment, message):
    with pytest.raises(ConfigError) as e:
        load_run_config(TINY_DIT, [assignment])
    assert message in str(e.value)
    assert "\n" not in str(e.value) and str(TINY_DIT) in str(e.value)


def test_set_parses_toml_values_and_steps_overrides():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("dit-s") == "dit-s" and parse_value("'x y'") == "x y"
    data = apply_overrides({"a": {"b": 1}}, ["a.c=2", "d.e.f='g'"])
    assert data == {"a": {"b": 1, "c": 2}, "d": {"e": {"f": "g"}}}
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["novalue"])
    c = load_run_config(TINY_DIT, ["optim.lr=3e-4", "model.overrides.depth=1"], steps=5)
    assert c.optim.lr == 3e-4 and c.train.steps == 5 and c.model.resolve().depth == 1


def test_clip_source_needs_an_index_and_other_sources_refuse_one():
    base = load_run_config(TINY_DIT).to_dict()
    base["data"]["sources"] = [{"type": "clips"}]
    with pytest.raises(ConfigError, match="'index'.*is required"):
        RunConfig.from_dict(base)
    base["data"]["sources"] = [{"type": "shapes", "index": "x.jsonl"}]
    with pytest.raises(ConfigError, match="only for type 'clips'"):
        RunConfig.from_dict(base)


@pytest.mark.parametrize("source, message", [
    ({"type": "shapes", "shapes": ["hexagon"]}, "unknown shape 'hexagon'; expected one of circle, square, triangle"),
    ({"type": "shapes", "sizes": []}, "needs at least one size"),
    ({"type": "dev", "shapes": ["square"]}, "'shapes', 'sizes' and 'exits' are only for type 'shapes'"),
    ({"type": "dev", "exits": True}, "'shapes', 'sizes' and 'exits' are only for type 'shapes'"),
    ({"type": "shapes", "tasks": {"continue": 1.0}}, "data source shapes tasks: unknown task"),
])
def test_shapes_source_object_filters_are_checked(source, message):
    base = load_run_config(TINY_DIT).to_dict()
    base["data"]["sources"] = [source]
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(base)


def test_source_tasks_need_a_run_trained_with_tasks():
    base = load_run_config(TINY_DIT).to_dict()
    base["data"]["sources"] = [{"type": "shapes", "tasks": {"first_frames": 1.0}}]
    with pytest.raises(ConfigError, match="a data source's tasks need diffusion.tasks"):
        RunConfig.from_dict(base)


def test_squares_fine_tune_config_starts_from_the_shipped_model_with_a_squares_source():
    config = load_run_config(CONFIGS / "default-t2v-squares.toml")
    default = load_run_config(CONFIGS / "default-t2v.toml")
    assert config.model.init == "src/kinema/weights/default"
    assert config.model.resolve() == default.model.resolve()  # the same network as the shipped one
    original, squares = config.data.sources
    assert original == dataclasses.replace(default.data.sources[0], weight=0.65)
    assert squares.shapes == ("square",) and squares.world_seed != original.world_seed


@pytest.fixture
def with_train_command(monkeypatch):
    """Register `train` in the CLI for this test, whether or not the lead has yet."""
    if "train" not in kinema.cli.COMMAND_MODULES:
        monkeypatch.setattr(kinema.cli, "COMMAND_MODULES", kinema.cli.COMMAND_MODULES + ("train",))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\nfamily = 'dit'\npreset = 'dit-tiny'\n[diffusion]\n[optim]\nlr = 1e-3\nmomentum = 0.9\n", "optim config: unknown key(s) momentum"),
        ("[model\n", "not valid TOML"),
        ("[train]\nsteps = 3\n", "needs a [model] section with family = 'dit' | 'unet3d' | 'vae3d'"),
    ],
)
def test_cli_bad_config_is_one_line_and_exit_2(tmp_path, capsys, with_train_command, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code = kinema.cli.main(["train", str(cfg), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kinema: error: ") and message in err
    assert not (tmp_path / "run").exists()


def test_cli_missing_config_and_bad_steps(tmp_path, capsys, with_train_command):
    assert kinema.cli.main(["train", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        kinema.cli.main(["train", str(TINY_DIT), "--steps", "0"])
    assert e.value.code == 2 and "--steps: expected a positive integer" in capsys.readouterr().err
    assert kinema.cli.main(["train", str(TINY_DIT), "--set", "train.seed=x"]) == 2
    assert "train.seed: expected an integer" in capsys.readouterr().err


def test_run_writes_its_resolved_config_as_json(tmp_path):
    from kinema.train.loop import train

    c = load_run_config(TINY_DIT, ["train.steps=1", "train.checkpoint_every=0", "diffusion.text_encoder='none'",
                                   "model.overrides.depth=1"])
    train(c, tmp_path / "run", progress=False)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert RunConfig.from_dict(written) == c.resolved()


def test_cli_refuses_a_corrupt_checkpoint_in_one_line(tmp_path, capsys, with_train_command):
    args = ["train", str(TINY_DIT), "--out", str(tmp_path / "run"), "--steps", "1", "--set", "diffusion.text_encoder='none'",
            "--set", "model.overrides.depth=1"]
    assert kinema.cli.main(args) == 0
    weights = tmp_path / "run" / "checkpoints" / "step-00000001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    assert kinema.cli.main([*args, "--resume", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is corrupt: model.safetensors has" in err


def test_exits_fine_tune_config_trains_exit_clips_only_as_continuation():
    config = load_run_config(CONFIGS / "default-t2v-exits.toml")
    squares = load_run_config(CONFIGS / "default-t2v-squares.toml")
    assert config.model.resolve() == squares.model.resolve() and config.model.init == "runs/default-t2v-squares/final"
    assert config.data.cache == squares.data.cache  # the squares run's cache, extended by the new source
    kept, exits = config.data.sources[:2], config.data.sources[2]
    assert [dataclasses.replace(s, weight=1.0) for s in kept] == [dataclasses.replace(s, weight=1.0)
                                                                  for s in squares.data.sources]
    assert exits.exits and exits.tasks == {"first_frames": 1.0} and exits.world_seed not in (0, 1)
