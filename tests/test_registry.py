"""The model registry: family lookup, presets by name, and loading any component dir."""

import pytest
import torch

from kinema.checkpoint import CheckpointError
from kinema.errors import KinemaError
from kinema.models import registry
from kinema.models.dit import DiTConfig, VideoDiT
from kinema.models.unet3d import UNet3D, UNet3DConfig
from kinema.models.sr3d import SR3D, SR3DConfig
from kinema.models.vae3d import VAE3D, VAE3DConfig

torch.set_num_threads(1)

TINY = {"dit": "dit-tiny", "unet3d": "unet3d-tiny", "vae3d": "vae-tiny", "sr3d": "sr3d-tiny"}


def test_each_family_maps_to_its_config_network_and_presets():
    expected = {"dit": (DiTConfig, VideoDiT), "unet3d": (UNet3DConfig, UNet3D), "vae3d": (VAE3DConfig, VAE3D),
                "sr3d": (SR3DConfig, SR3D)}
    assert set(registry.FAMILIES) == set(expected)
    for family, (config_cls, network_cls) in expected.items():
        got_config, got_network, presets = registry.model_family(family)
        assert (got_config, got_network) == (config_cls, network_cls)
        assert config_cls.kind == family  # a config's kind names its family
        assert TINY[family] in presets and all(isinstance(c, config_cls) for c in presets.values())


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(KinemaError, match="unknown model family 'gan'; expected one of dit, unet3d, vae3d, sr3d"):
        registry.model_family("gan")


def test_train_config_uses_the_registry():
    import kinema.train.config as train_config

    assert train_config.model_family is registry.model_family
    assert train_config.FAMILIES == registry.FAMILIES
    assert train_config.DENOISER_FAMILIES == registry.DENOISER_FAMILIES == ("dit", "unet3d")


def test_presets_are_found_by_name_across_families():
    assert registry.find_preset("unet3d-tiny") == ("unet3d", registry.model_family("unet3d")[2]["unet3d-tiny"])
    assert registry.find_preset("vae-s")[0] == "vae3d"
    with pytest.raises(KinemaError, match="unknown preset 'dit-xxl'; known: .*dit-s.*vae-tiny"):
        registry.find_preset("dit-xxl")


@pytest.mark.parametrize("family", ["dit", "unet3d", "vae3d"])
def test_load_component_dir_builds_the_family_its_config_names(tmp_path, family):
    config_cls, network_cls, presets = registry.model_family(family)
    torch.manual_seed(0)
    net = network_cls(presets[TINY[family]])
    for p in net.parameters():  # make every tensor distinct from a fresh init
        p.data.normal_()
    net.save(tmp_path / "m")
    config, module = registry.load_component_dir(tmp_path / "m")
    assert type(module) is network_cls and config == net.config and not module.training
    for name, tensor in net.state_dict().items():
        assert torch.equal(module.state_dict()[name], tensor), name


def test_load_component_dir_errors_are_one_line(tmp_path):
    def error(path) -> str:
        with pytest.raises(CheckpointError) as info:
            registry.load_component_dir(path)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "model directory not found" in error(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in error(tmp_path / "empty")

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"kind": "dit", ')
    assert "not valid JSON" in error(corrupt)

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text('{"kind": "gan", "width": 3}')
    assert "unknown kind 'gan'; expected a model config of kind dit, unet3d, vae3d" in error(unknown)

    bad_field = tmp_path / "bad_field"
    bad_field.mkdir()
    (bad_field / "config.json").write_text('{"kind": "vae3d", "widht": 3}')
    assert "unknown key(s) widht" in error(bad_field)

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(VAE3DConfig().to_json())
    assert "weights file not found" in error(no_weights)
