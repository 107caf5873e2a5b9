"""The decision interfaces (``action_mode`` item / query / residual), credit infos, expert access, edge presets."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import offload_gym
from offload_gym.config import EDGE_MODELS, ConfigError, make_config, merge_overrides
from offload_gym.policies import make_policy

TINY = "offload_gym/WifiOffload-tiny-v0"


def _tiny(mode: str, **extra: Any) -> gym.Env:
    return gym.make(TINY, config={"action_mode": mode, "episode.queries": 40, **extra})


def _play(env: gym.Env, seed: int, choose: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    obs, info = env.reset(seed=seed)
    infos = [info]
    while True:
        obs, _, terminated, truncated, info = env.step(choose(env, obs, info))
        infos.append(info)
        if terminated or truncated:
            return info["episode_metrics"], infos


def _greedy(env: gym.Env, obs: np.ndarray, info: dict[str, Any]) -> int:
    policy = make_policy("greedy", env.unwrapped.config)
    return int(policy.predict(obs, action_masks=np.asarray(info["action_mask"], dtype=bool))[0])


@pytest.mark.parametrize("env_id", ["offload_gym/WifiOffload-query-v0", "offload_gym/WifiOffload-residual-v0"])
def test_registered_ids_have_the_interfaces_spaces(env_id: str) -> None:
    # (both checkers run on every registered id in test_env.py::test_checkers_pass_without_warnings)
    env = gym.make(env_id)
    n_aps = env.unwrapped.config.topology.n_aps
    residual = env_id.endswith("residual-v0")
    assert env.unwrapped.config.action_mode == ("residual" if residual else "query")
    assert env.action_space.n == n_aps + (3 if residual else 2)
    assert env.observation_space.shape == (len(env.unwrapped.observation_names),)


@pytest.mark.parametrize("seed", [0, 3])
def test_query_mode_and_residual_follow_reproduce_item_greedy(seed: int) -> None:
    """The built-in sub-scheduler is greedy: greedy on the query interface, and always "follow" on the
    residual one, give item-mode greedy's episode exactly, with one step per query."""
    item, item_infos = _play(_tiny("item"), seed, _greedy)
    query, query_infos = _play(_tiny("query"), seed, _greedy)
    residual, residual_infos = _play(_tiny("residual"), seed, lambda env, o, i: env.unwrapped.follow_action)
    assert item["decomposed_share"] > 0  # the episode exercises the sub-scheduler
    for key in ("mean_reward", "mean_latency_s", "mean_quality", "decomposed_share", "sim_time_s", "queries"):
        assert query[key] == item[key] == residual[key], key
    assert len(query_infos) - 1 == len(residual_infos) - 1 == 40 < len(item_infos) - 1
    assert all(i["decision"] in ("query", "end") for i in query_infos)


def test_decision_query_id_and_elapsed_s() -> None:
    env = _tiny("item")
    obs, info = env.reset(seed=1)
    assert info["decision_query_id"] == 0 and info["elapsed_s"] == 0.0
    last_time = info["time_s"]
    seen: list[int] = []
    while True:
        seen.append(info["decision_query_id"])
        obs, _, _, truncated, info = env.step(_greedy(env, obs, info))
        assert info["elapsed_s"] == pytest.approx(info["time_s"] - last_time, abs=1e-12)
        assert info["elapsed_s"] >= 0.0
        last_time = info["time_s"]
        if info["decision"] in ("subtask", "aggregation"):
            assert info["elapsed_s"] == 0.0  # a query's decisions happen at its arrival instant
            assert info["decision_query_id"] == seen[-1]
        if truncated:
            break
    assert info["decision_query_id"] == -1
    assert sorted(set(seen)) == list(range(40))  # every query is decided, in arrival order
    assert seen == sorted(seen)


def test_expert_action_is_greedy_in_item_mode_and_follow_in_residual() -> None:
    env = _tiny("item")
    obs, info = env.reset(seed=2)
    for _ in range(60):
        expert = env.unwrapped.expert_action()
        assert expert == _greedy(env, obs, info)
        obs, _, _, truncated, info = env.step(expert)
        if truncated:
            break
    res = _tiny("residual")
    res.reset(seed=2)
    assert res.unwrapped.expert_action() == res.unwrapped.follow_action


def test_residual_observation_carries_the_suggestion_and_follow_is_always_allowed() -> None:
    env = _tiny("residual")
    item = _tiny("item")
    obs, info = env.reset(seed=4)
    item_obs, _ = item.reset(seed=4)
    n_aps = env.unwrapped.n_aps
    names = env.unwrapped.observation_names
    assert names[-(n_aps + 2):][0] == "suggested_phone" and names[-1] == "suggested_decompose"
    assert np.array_equal(obs[:item_obs.size], item_obs)
    suggestion = obs[item_obs.size:]
    assert suggestion.sum() == 1.0
    assert int(np.argmax(suggestion)) == _greedy(item, item_obs, info | {"action_mask": info["action_mask"][:-1]})
    mask = env.unwrapped.action_masks()
    assert mask[env.unwrapped.follow_action] and mask.size == n_aps + 3
    assert np.array_equal(info["action_mask"].astype(bool), mask)


def test_residual_override_differs_from_follow() -> None:
    follow, _ = _play(_tiny("residual"), 5, lambda env, o, i: env.unwrapped.follow_action)
    local, _ = _play(_tiny("residual"), 5, lambda env, o, i: 0)
    assert local["edge_share"] == 0.0 < follow["edge_share"]


def test_masked_action_falls_back_or_raises_in_query_mode() -> None:
    env = _tiny("query", **{"workload.subtask_count_probs": [1.0]})  # K = 1: decompose is always masked
    _, info = env.reset(seed=0)
    decompose = env.unwrapped.n_aps + 1
    assert not info["action_mask"][decompose]
    _, _, _, _, info = env.step(decompose)
    assert info["invalid_actions"] == 1
    strict = _tiny("query", **{"workload.subtask_count_probs": [1.0]}, invalid_action="raise")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="masked"):
        strict.step(decompose)
    with pytest.raises(ValueError, match="outside Discrete"):
        strict.step(decompose + 1)


def test_action_mode_cannot_change_at_reset_and_is_validated() -> None:
    env = _tiny("query")
    with pytest.raises(ValueError, match="action_mode fixes the spaces"):
        env.reset(seed=0, options={"config": {"action_mode": "residual"}})
    with pytest.raises(ConfigError, match="action_mode: 'bandit' is not allowed"):
        make_config({"action_mode": "bandit"})


def test_edge_model_presets_from_one_table() -> None:
    for name, preset in EDGE_MODELS.items():
        edge = make_config({"edge": {"model": name}}).edge
        assert (edge.ability, edge.decode_tps, edge.prefill_tps) == (preset["ability"], preset["decode_tps"],
                                                                   preset["prefill_tps"])
    assert make_config().edge.model == "8B"
    explicit = make_config({"edge.model": "70B", "edge.ability": 2.0}).edge
    assert (explicit.ability, explicit.decode_tps) == (2.0, 9.0)  # set values win over the preset
    cfg = make_config({"edge": {"model": "3B", "kappa": 0.1}})
    assert make_config(cfg.to_dict()) == cfg
    swapped = make_config(merge_overrides(cfg.to_dict(), {"edge": {"model": "70B"}})).edge
    assert (swapped.ability, swapped.decode_tps, swapped.kappa) == (2.3, 9.0, 0.1)
    custom = make_config({"edge": {"model": "custom", "decode_tps": 50.0}}).edge
    assert custom.ability == 1.4 and custom.decode_tps == 50.0
    with pytest.raises(ConfigError, match=r"edge\.model: .13B. is not allowed"):
        make_config({"edge": {"model": "13B"}})
    env = gym.make("offload_gym/WifiOffload-v0", config={"edge": {"model": "70B"}})
    assert env.unwrapped.config.edge.decode_tps == 9.0


def test_subtask_count_feature_stays_in_space_with_the_corpus() -> None:
    """The corpus sets K up to 5 whatever subtask_count_probs says: the feature is normalised by that K_max."""
    env = gym.make(TINY, config={"workload.source": "corpus", "workload.subtask_count_probs": [0.5, 0.5],
                                 "episode.queries": 60})
    assert env.unwrapped.config.max_subtasks == offload_gym.planner.MAX_SUBTASKS
    obs, info = env.reset(seed=0)
    space = env.observation_space
    while True:
        assert space.contains(obs)
        obs, _, _, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[-1]))
        if truncated:
            break


def test_observation_features_match_their_names() -> None:
    """Each named feature holds what its name says, read back from the simulator's state (its scene; the indices
    come from the names)."""
    from offload_gym.envs.scene import scene

    env = gym.make(TINY, config={"episode.queries": 40, "workload.subtask_count_probs": [0, 1.0]})
    obs, _ = env.reset(seed=6)
    base = env.unwrapped
    names = base.observation_names

    def feat(name: str) -> float:
        return float(obs[names.index(name)])

    sc = scene(base)
    assert sc is not None and sc.decision is not None
    assert feat("decision_query") == 1.0 and feat("decision_subtask") == feat("decision_aggregation") == 0.0
    assert feat("query_n_subtasks") == 1.0  # K = 2 of K_max = 2
    assert feat("can_decompose") == 1.0 and feat("plan_pred_latency") > 0.0
    structure = ("fan_out", "chain", "dag")[sc.decision.structure]  # FAN_OUT, CHAIN, DAG = 0, 1, 2
    assert feat(f"structure_{structure}") == 1.0
    assert feat("episode_progress") == pytest.approx(sc.queries_arrived / 40)
    own = int(sc.own_ap[sc.decision.user])
    assert feat(f"ap{own}_is_own_ap") == 1.0 and sum(feat(f"ap{j}_is_own_ap") for j in range(base.n_aps)) == 1.0
    assert feat("phone_reachable") == 1.0
    obs, _, _, _, _ = env.step(base.n_aps + 1)  # decompose: the first subtask step
    assert feat("decision_subtask") == 1.0 and feat("item_position") == 0.0
    obs, _, _, _, _ = env.step(0)
    assert feat("item_position") == 0.5
    obs, _, _, _, _ = env.step(0)
    assert feat("decision_aggregation") == 1.0 and feat("item_position") == feat("item_n_predecessors") == 1.0


@pytest.mark.parametrize("mode", ["query", "residual"])
def test_pickled_mid_episode_continues_identically(mode: str) -> None:
    import pickle

    env = _tiny(mode)
    env.reset(seed=8)
    for _ in range(5):
        env.step(env.unwrapped.expert_action())
    copy = pickle.loads(pickle.dumps(env.unwrapped))
    for _ in range(10):
        a = int(np.flatnonzero(env.unwrapped.action_masks())[-1])
        o1, r1, _, t1, i1 = env.unwrapped.step(a)
        o2, r2, _, t2, i2 = copy.step(a)
        assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2 and i1["time_s"] == i2["time_s"]
