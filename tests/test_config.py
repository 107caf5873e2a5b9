"""Config validation: typed, frozen, round-trips, clear errors naming the field."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

from offload_gym.config import ConfigError, ScenarioConfig, config_table_markdown, make_config


def test_defaults_match_design() -> None:
    cfg = make_config()
    assert (cfg.topology.n_users, cfg.topology.n_aps, cfg.topology.area_m) == (20, 4, 30.0)
    assert cfg.wifi.background_stations == 16 and cfg.wifi.bandwidth_mhz == 80
    assert (cfg.edge.decode_tps, cfg.edge.kappa, cfg.edge.max_batch, cfg.edge.ability) == (78.0, 0.3, 16, 1.4)
    assert (cfg.phone.decode_tps, cfg.phone.ability) == (48.0, -0.2)
    assert cfg.workload.subtask_count_probs == (0.2, 0.3, 0.3, 0.15, 0.05)
    assert cfg.episode.queries == 200 and cfg.invalid_action == "fallback"
    tiny = make_config(scenario="tiny")
    assert (tiny.topology.n_users, tiny.topology.n_aps, tiny.episode.queries) == (4, 2, 20)


def test_round_trip_and_frozen() -> None:
    cfg = make_config({"edge": {"kappa": 0.1}, "workload.arrival_rate": 0.3})
    assert cfg.edge.kappa == 0.1 and cfg.workload.arrival_rate == 0.3
    assert make_config(cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.edge.kappa = 0.5  # type: ignore[misc]
    assert isinstance(gym.make("offload_gym/WifiOffload-v0", config={"edge": {"kappa": 0.1}}).unwrapped.config,
                      ScenarioConfig)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"edge": {"kapa": 0.1}}, r"edge\.kapa: unknown config key\. Did you mean 'edge\.kappa'"),
        ({"wifii": {}}, r"wifii: unknown config key\. Did you mean 'wifi'"),
        ({"workload": {"arrival_rate": -0.2}}, r"workload\.arrival_rate: -0\.2 is out of range; must be >= 1e-06"),
        ({"workload": {"subtask_count_probs": [0.5, 0.5, 0.5]}}, r"workload\.subtask_count_probs: .* sum to 1"),
        ({"workload": {"structure_probs": [0.5, 0.5]}}, r"workload\.structure_probs: needs 3"),
        ({"topology": {"n_users": "twenty"}}, r"topology\.n_users: expected an integer, got str"),
        ({"topology": {"n_users": 2.5}}, r"topology\.n_users: expected an integer"),
        ({"edge": {"kappa": True}}, r"edge\.kappa: expected a number"),
        ({"wifi": {"bandwidth_mhz": 60}}, r"wifi\.bandwidth_mhz: 60 is not allowed; choose one of \[20, 40, 80, 160\]"),
        ({"planner": {"kind": "noisy"}}, r"planner\.kind: 'noisy' is not allowed.*did you mean 'noisy-oracle'"),
        ({"invalid_action": "ignore"}, r"invalid_action: 'ignore' is not allowed"),
        ({"topology": {"n_aps": 3, "ap_positions": [[1, 1], [2, 2]]}}, r"topology\.ap_positions: has 2 positions but"),
        ({"topology": {"ap_positions": [[1, 1], [2, 2], [3, 3], [99, 3]]}}, r"inside the \[0, 30\.0\] m square"),
        ({"wifi": {"cw_min": 15, "cw_max": 1000}}, r"wifi\.cw_max: .* power of two"),
        ({"episode": {"queries": 0}}, r"episode\.queries: 0 is out of range"),
        ({"phone": {"device_classes": [{"share": 0.5}]}}, r"phone\.device_classes: shares sum to 0\.5"),
        ({"edge": "fast"}, r"edge: expected a mapping"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(overrides: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make_config(overrides)
    with pytest.raises(ConfigError):
        gym.make("offload_gym/WifiOffload-v0", config=overrides)


def test_unknown_scenario() -> None:
    with pytest.raises(ValueError, match="scenario: 'huge' is unknown"):
        make_config(scenario="huge")


def test_heterogeneous_phones() -> None:
    cfg = make_config({"phone": {"device_classes": [
        {"share": 0.5, "decode_tps": 20.0, "ability": -0.5}, {"share": 0.5, "decode_tps": 60.0, "ability": 0.2}]}})
    env = gym.make("offload_gym/WifiOffload-v0", config=cfg.to_dict())
    env.reset(seed=0)
    speeds = {decode for _, decode, _ in env.unwrapped.episode.setup.phone_params}
    assert speeds == {20.0, 60.0}


def test_config_table_lists_every_field() -> None:
    table = config_table_markdown()
    for key in ("topology.n_users", "wifi.background_stations", "edge.kappa", "workload.subtask_output_inflation",
                "planner.kind", "reward.deadline_s", "episode.queries", "invalid_action"):
        assert f"`{key}`" in table


def test_readme_config_table_is_current() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert config_table_markdown() in readme
