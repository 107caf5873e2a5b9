"""Built-in policies and the SB3 wrapper: each does what its name says, from (observation, mask) alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import offload_gym
from agents.evaluation import evaluate_policy, load_predictor, run_episode
from agents.policies import BUILTIN_POLICIES, PolicyLoadError, SB3Predictor, detect_sb3_algorithm
from offload_gym.policies import POLICIES, make_policy

TINY = "offload_gym/WifiOffload-tiny-v0"
PAPER = "offload_gym/WifiOffload-v0"


def play(env: gym.Env, name: str, seed: int) -> tuple[list[tuple[str, np.ndarray, int]], list[dict[str, Any]], dict[str, Any]]:
    """One episode: (decision kind, mask, action) per step, every completed-query record, and the final info."""
    policy = make_policy(name, env.unwrapped.config, seed=seed)
    obs, info = env.reset(seed=seed)
    steps: list[tuple[str, np.ndarray, int]] = []
    completed: list[dict[str, Any]] = []
    while True:
        mask = np.asarray(info["action_mask"], dtype=bool)
        action, _ = policy.predict(obs, action_masks=mask)
        steps.append((info["decision"], mask, int(action)))
        obs, _, terminated, truncated, info = env.step(action)
        completed += info["completed"]
        if terminated or truncated:
            return steps, completed, info


@pytest.fixture
def tiny() -> Iterator[gym.Env]:
    env = gym.make(TINY)
    yield env
    env.close()


def test_builtin_names_match_the_env_package() -> None:
    assert set(BUILTIN_POLICIES) == set(POLICIES)
    assert BUILTIN_POLICIES[:3] == ("local-only", "nearest-edge", "random-split")


@pytest.mark.parametrize("seed", [0, 1])
def test_local_only_never_leaves_the_phone(tiny: gym.Env, seed: int) -> None:
    _, completed, info = play(tiny, "local-only", seed)
    assert len(completed) == tiny.unwrapped.config.episode.queries
    assert all(p == 0 for c in completed for p in c["placements"])
    assert not any(c["decomposed"] for c in completed)
    assert info["episode_metrics"]["edge_share"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_edge_uses_the_phones_own_ap(seed: int) -> None:
    tiny = gym.make(TINY)
    _, completed, _ = play(tiny, "nearest-edge", seed)
    own_ap = tiny.unwrapped.episode.setup.own_ap  # the phones' associations (no outage changes them here)
    assert len(completed) == tiny.unwrapped.config.episode.queries
    for c in completed:
        assert own_ap[c["user"]] >= 0, "every phone of the tiny scenario is in coverage"
        assert c["placements"] == [int(own_ap[c["user"]]) + 1], c
    assert {c["placements"][0] for c in completed} == {int(own_ap[c["user"]]) + 1 for c in completed}


def test_nearest_edge_uses_the_phone_when_out_of_coverage() -> None:
    far = {"topology": {"n_users": 2, "n_aps": 1, "area_m": 400.0, "ap_positions": [[0.0, 0.0]],
                        "user_positions": [[1.0, 1.0], [400.0, 400.0]]}, "episode": {"queries": 12}}
    env = gym.make(TINY, config=far)
    _, completed, info = play(env, "nearest-edge", 3)
    by_user = {c["user"]: c["placements"] for c in completed}
    assert by_user[0] == [1] and by_user[1] == [0]
    assert info["invalid_actions"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_split_picks_valid_locations_and_always_decomposes(tiny: gym.Env, seed: int) -> None:
    steps, completed, info = play(tiny, "random-split", seed)
    n_aps = tiny.unwrapped.n_aps
    assert all(mask[action] for _, mask, action in steps), "a masked action was chosen"
    query_steps = [(mask, action) for kind, mask, action in steps if kind == "query"]
    splittable = [action for mask, action in query_steps if mask[n_aps + 1]]
    assert splittable and all(a == n_aps + 1 for a in splittable)
    assert all(c["decomposed"] == (c["n_subtasks"] > 1) for c in completed)
    assert info["invalid_actions"] == 0
    used = {p for c in completed for p in c["placements"]}
    assert len(used) >= 2, f"uniform placement should use several locations, used {used}"


def test_random_split_is_reproducible_per_episode_seed(tiny: gym.Env) -> None:
    policy = make_policy("random-split", tiny.unwrapped.config, seed=123)
    first = run_episode(tiny, policy, seed=7)
    run_episode(tiny, policy, seed=8)  # advance the policy's generator
    again = run_episode(tiny, policy, seed=7)
    assert first == again
    assert run_episode(tiny, policy, seed=8) != first


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_no_split_never_decomposes(tiny: gym.Env, seed: int) -> None:
    steps, completed, _ = play(tiny, "greedy-no-split", seed)
    n_aps = tiny.unwrapped.n_aps
    assert any(mask[n_aps + 1] for kind, mask, _ in steps if kind == "query"), "the episode should offer splits"
    assert all(action != n_aps + 1 for _, _, action in steps)
    assert not any(c["decomposed"] for c in completed)


def test_greedy_beats_nearest_edge_in_reward() -> None:
    cfg = {"episode": {"queries": 80}}
    seeds = (11, 12, 13)
    greedy = evaluate_policy("greedy", env_id=PAPER, config=cfg, seeds=seeds)
    nearest = evaluate_policy("nearest-edge", env_id=PAPER, config=cfg, seeds=seeds)
    g = np.mean([e["mean_reward"] for e in greedy])
    n = np.mean([e["mean_reward"] for e in nearest])
    assert g > n + 0.03, (g, n)
    assert any(e["decomposed_share"] > 0 for e in greedy), "greedy should decompose some queries"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_predict_single_and_batch(tiny: gym.Env, name: str) -> None:
    policy = make_policy(name, tiny.unwrapped.config, seed=0)
    obs, info = tiny.reset(seed=5)
    mask = np.asarray(info["action_mask"], dtype=bool)
    action, state = policy.predict(obs, action_masks=mask)
    assert np.shape(action) == () and state is None
    assert mask[int(action)]
    batch = np.stack([obs, obs, obs])
    masks = np.stack([mask, mask, mask])
    actions, _ = policy.predict(batch, action_masks=masks)
    assert actions.shape == (3,)
    assert all(masks[i, a] for i, a in enumerate(actions))
    unmasked, _ = policy.predict(batch)  # no mask: every action allowed, still one action per row
    assert unmasked.shape == (3,)
    assert tiny.action_space.contains(int(unmasked[0]))


def test_make_policy_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="grredy"):
        make_policy("grredy")
    with pytest.raises(PolicyLoadError, match=r"'grredy'.*greedy"):
        load_predictor("grredy", offload_gym.make_config())


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def predict(self, observation: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, Any]:
        self.calls.append(kwargs)
        return np.zeros((), dtype=np.int64), None

    def set_random_seed(self, seed: int | None = None) -> None:
        pass


class MaskablePPO(_Recorder):  # named like the sb3-contrib class, which is what SB3Predictor checks
    pass


class PPO(_Recorder):
    pass


def test_sb3_predictor_passes_masks_to_maskable_ppo_only() -> None:
    mask = np.array([True, False, True, False])
    maskable, plain = SB3Predictor(MaskablePPO()), SB3Predictor(PPO())
    maskable.predict(np.zeros(44, dtype=np.float32), action_masks=mask)
    plain.predict(np.zeros(44, dtype=np.float32), action_masks=mask)
    assert maskable.uses_masks and not plain.uses_masks
    np.testing.assert_array_equal(maskable.model.calls[0]["action_masks"], mask)
    assert "action_masks" not in plain.model.calls[0]


def test_trained_models_load_by_detected_algorithm(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO as RealMaskablePPO
    from stable_baselines3 import A2C, DQN
    from stable_baselines3 import PPO as RealPPO

    env = gym.make(TINY)
    for cls in (RealMaskablePPO, RealPPO, A2C, DQN):
        path = tmp_path / f"{cls.__name__.lower()}.zip"
        cls("MlpPolicy", env, device="cpu", seed=0).save(path)
        assert detect_sb3_algorithm(path) == cls.__name__
        predictor = load_predictor(str(path), env.unwrapped.config)
        assert isinstance(predictor, SB3Predictor) and predictor.algorithm == cls.__name__
    maskable = load_predictor(str(tmp_path / "maskableppo.zip"), env.unwrapped.config)
    metrics = run_episode(env, maskable, seed=1)
    assert metrics["queries"] == env.unwrapped.config.episode.queries
    assert metrics["invalid_actions"] == 0, "MaskablePPO gets the masks and never picks a masked action"
    paper = offload_gym.make_config()
    with pytest.raises(PolicyLoadError, match="trained for observations"):
        load_predictor(str(tmp_path / "ppo.zip"), paper)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(PolicyLoadError, match="cannot read model file"):
        load_predictor(str(tmp_path / "junk.zip"), paper)


def _greedy_reference(policy: Any, obs: np.ndarray, mask: np.ndarray) -> int:
    """Greedy's rule written plainly on numpy (unsquash_time per feature), as it stood before its fast form."""
    from offload_gym.envs.observation import GLOBAL_FEATURES, LOCATION_FEATURES, unsquash_time

    g = {name: i for i, name in enumerate(GLOBAL_FEATURES)}
    n_g, n_l = len(GLOBAL_FEATURES), len(LOCATION_FEATURES)
    loc_index = {name: i for i, name in enumerate(LOCATION_FEATURES)}
    n_aps = mask.size - 2
    locs = [L for L in range(n_aps + 1) if mask[L]]
    if not locs:
        return 0
    times = {L: float(unsquash_time(obs[n_g + L * n_l + loc_index["est_time"]])) for L in locs}
    quality = {L: float(obs[n_g + L * n_l + loc_index["est_quality"]]) for L in locs}
    if obs[g["decision_query"]] > 0.5:
        best = max(locs, key=lambda L: (policy._reward(quality[L], times[L]), -L))
        if mask[n_aps + 1] and obs[g["can_decompose"]] > 0.5:
            plan = policy._reward(float(obs[g["plan_pred_quality"]]), float(unsquash_time(obs[g["plan_pred_latency"]])))
            if plan > policy._reward(quality[best], times[best]):
                return n_aps + 1
        return best
    if obs[g["decision_subtask"]] > 0.5:
        k = 1 + round(float(obs[g["query_n_subtasks"]]) * (policy.config.max_subtasks - 1))
        w = policy.config.reward.latency_weight
        return max(locs, key=lambda L: (quality[L] / k - w * times[L], -L))
    if obs[g["decision_aggregation"]] > 0.5:
        return min(locs, key=lambda L: (times[L], L))
    return 0


@pytest.mark.parametrize("overrides", [{}, {"reward": {"kind": "product"}}, {"topology": {"n_aps": 1}},
                                       {"topology": {"n_aps": 8}}])
def test_greedy_decide_equals_its_plain_numpy_form(overrides: dict[str, Any]) -> None:
    """Random observations (with times at and past the squash's cap, and NaN): the same action."""
    from offload_gym.config import make_config
    from offload_gym.envs.observation import GLOBAL_FEATURES

    cfg = make_config(overrides)
    policy = make_policy("greedy", cfg)
    g = {name: i for i, name in enumerate(GLOBAL_FEATURES)}
    rng = np.random.default_rng(0)
    n_aps = cfg.topology.n_aps
    size = len(GLOBAL_FEATURES) + (n_aps + 1) * (len(offload_gym.envs.observation.LOCATION_FEATURES))
    decompositions = 0
    for _ in range(4000):
        obs = rng.random(size).astype(np.float32)
        special = rng.choice(np.array([0.0, 1.0, 0.9999999, 1 - 1e-7, 0.5, np.nan], dtype=np.float32), size=size)
        pick = rng.random(size) < 0.1
        obs[pick] = special[pick]
        kind = int(rng.integers(0, 4))
        for j, name in enumerate(("decision_query", "decision_subtask", "decision_aggregation")):
            obs[g[name]] = 1.0 if j == kind else 0.0
        obs[g["query_n_subtasks"]] = rng.random()
        mask = rng.random(n_aps + 2) < 0.7
        action = policy.decide(obs, mask)
        assert action == _greedy_reference(policy, obs, mask)
        decompositions += action == n_aps + 1
    assert decompositions > 0
