"""Typed, validated, frozen scenario configuration.

A scenario is a :class:`ScenarioConfig`: one frozen dataclass per section (``topology``, ``wifi``,
``phone``, ``edge``, ``workload``, ``planner``, ``reward``, ``episode``) plus the top-level
``invalid_action`` rule. Build one from nested JSON-able overrides with :func:`make_config`; every
field carries its unit, its allowed range and a one-line description in its metadata, which is also
what the README's config table is generated from (:func:`config_table_markdown`).

Bad input raises :class:`ConfigError` (a ``ValueError``) naming the dotted field and what is allowed,
and suggesting the closest valid key for a misspelling.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTION_MODES",
    "EDGE_MODELS",
    "SCENARIOS",
    "ConfigError",
    "DeviceClassConfig",
    "EdgeConfig",
    "EnergyConfig",
    "EpisodeConfig",
    "FaultsConfig",
    "PhoneConfig",
    "PlannerConfig",
    "RewardConfig",
    "ScenarioConfig",
    "TopologyConfig",
    "WifiConfig",
    "WorkloadConfig",
    "check_planner_checkpoint",
    "make_config",
    "merge_overrides",
]


class ConfigError(ValueError):
    """A configuration value or key that is not allowed. The message names the dotted field."""


def _f(default: Any, doc: str, unit: str = "", *, lo: float | None = None, hi: float | None = None,
       lo_open: bool = False, choices: tuple[Any, ...] | None = None) -> Any:
    """A dataclass field with documentation and range metadata used by validation and the README."""
    meta = {"doc": doc, "unit": unit, "lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TopologyConfig:
    """Where the APs and phones are."""

    n_users: int = _f(20, "phones", lo=1, hi=1000)
    n_aps: int = _f(4, "APs, each with an edge server and its own channel", lo=1, hi=64)
    area_m: float = _f(30.0, "side of the square area", "m", lo=1.0, hi=10_000.0)
    ap_positions: tuple[tuple[float, float], ...] | None = _f(
        None, "AP coordinates [[x, y], ...]; default: centres of a near-square grid (quadrant centres for 4)", "m")
    user_positions: tuple[tuple[float, float], ...] | None = _f(
        None, "fixed phone coordinates; default: uniform random per episode", "m")

    def __post_init__(self) -> None:
        for name, count in (("ap_positions", self.n_aps), ("user_positions", self.n_users)):
            pos = getattr(self, name)
            if pos is None:
                continue
            if len(pos) != count:
                what = "n_aps" if name == "ap_positions" else "n_users"
                raise ConfigError(f"topology.{name}: has {len(pos)} positions but topology.{what} is {count}; "
                                  f"give exactly one [x, y] per {'AP' if what == 'n_aps' else 'phone'}")
            for xy in pos:
                if len(xy) != 2 or not all(0.0 <= float(c) <= self.area_m for c in xy):
                    raise ConfigError(f"topology.{name}: {list(xy)} is not an [x, y] pair inside the "
                                      f"[0, {self.area_m}] m square (topology.area_m)")


@dataclass(frozen=True)
class WifiConfig:
    """802.11ax link and DCF contention parameters (Bianchi 2000, basic access)."""

    background_stations: int = _f(16, "saturated non-LLM stations per AP (the contention level)", lo=0, hi=500)
    bandwidth_mhz: int = _f(80, "channel width", "MHz", choices=(20, 40, 80, 160))
    spatial_streams: int = _f(2, "spatial streams", lo=1, hi=8)
    frequency_ghz: float = _f(5.18, "carrier frequency", "GHz", lo=1.0, hi=7.2)
    breakpoint_m: float = _f(10.0, "TGax enterprise path-loss breakpoint distance", "m", lo=1.0, hi=100.0)
    noise_dbm_per_20mhz: float = _f(-94.0, "noise floor per 20 MHz (+3 dB per doubling)", "dBm", lo=-120, hi=-50)
    phone_tx_dbm: float = _f(15.0, "phone transmit power", "dBm", lo=-10, hi=30)
    ap_tx_dbm: float = _f(20.0, "AP transmit power", "dBm", lo=-10, hi=36)
    slot_s: float = _f(9e-6, "slot time", "s", lo=0.0, lo_open=True, hi=1e-3)
    sifs_s: float = _f(16e-6, "SIFS", "s", lo=0.0, hi=1e-3)
    difs_s: float = _f(34e-6, "DIFS (access dcf; edca waits AIFS instead)", "s", lo=0.0, hi=1e-3)
    cw_min: int = _f(15, "minimum contention window (W = cw_min + 1)", lo=1, hi=1023)
    cw_max: int = _f(1023, "maximum contention window", lo=1, hi=65535)
    preamble_s: float = _f(44e-6, "HE SU preamble with one HE-LTF (access edca adds he_ltf_s per further HE-LTF)", "s",
                           lo=0.0, hi=1e-3)
    access: str = _f("edca", "channel access timing: edca (802.11ax best effort as ns-3 runs it: AIFS, the preamble by "
                     "spatial streams, a retry limit, the fitted collision time; validation/ns3) or dcf (the classic "
                     "Bianchi timings of docs/model.md#classic-dcf: DIFS, a fixed preamble, unlimited retries; the model "
                     "before the ns-3 comparison)",
                     choices=("edca", "dcf"))
    aifsn: int = _f(3, "edca: AIFS = SIFS + aifsn slots (3: best effort, 802.11-2020 Table 9-155)", lo=1, hi=15)
    he_ltf_s: float = _f(8e-6, "edca: duration of each HE-LTF beyond the first (802.11ax 27.3.11; ns-3: 8 us)", "s",
                         lo=0.0, hi=1e-4)
    retry_limit: int = _f(7, "edca: attempts before a frame is dropped (802.11 dot11ShortRetryLimit; ns-3 MaxSsrc)",
                          lo=1, hi=64)
    collision: str = _f("ack-timeout", "edca: collision time, ack-timeout (T_data + SIFS + slot + AIFS, the best fit "
                        "to ns-3) or eifs (T_data + EIFS, 802.11-2020 10.3.2.3.7; 3-7 % slower than ns-3)",
                        choices=("ack-timeout", "eifs"))
    immediate_access: bool = _f(True, "edca: a message alone in its cell sends its first frame at once (no AIFS, no "
                                "backoff: 802.11-2020 10.23.2.2), as ns-3 does")
    access_delay_cv: float = _f(0.0, "0: every message waits the model's mean access delay; above 0 a gamma draw with "
                                "that mean and this coefficient of variation (ns-3's per-frame delays spread about 1-3x "
                                "their mean under contention; validation/ns3)", lo=0.0, hi=10.0)
    eifs_ack_rate_bps: float = _f(6e6, "edca: the lowest basic rate, whose ACK time sets EIFS after a collision", "b/s",
                                  lo=0.0, lo_open=True)
    symbol_s: float = _f(13.6e-6, "OFDM data symbol with 0.8 us GI", "s", lo=0.0, lo_open=True, hi=1e-3)
    mac_header_bytes: int = _f(30, "MAC header", "B", lo=0, hi=1000)
    ack_bytes: int = _f(14, "ACK frame", "B", lo=0, hi=1000)
    ack_rate_bps: float = _f(24e6, "legacy rate the ACK is sent at", "b/s", lo=0.0, lo_open=True)
    ack_preamble_s: float = _f(20e-6, "legacy preamble of the ACK", "s", lo=0.0, hi=1e-3)
    ack_symbol_s: float = _f(4e-6, "legacy OFDM symbol", "s", lo=0.0, lo_open=True, hi=1e-3)
    frame_bytes: int = _f(1500, "payload per frame; one frame per channel access, no aggregation", "B", lo=1, hi=65535)
    bytes_per_token: float = _f(4.0, "payload bytes per token", "B", lo=0.0, hi=1000.0)
    message_overhead_bytes: int = _f(400, "protocol overhead per message", "B", lo=0, hi=100_000)
    backhaul_delay_s: float = _f(0.5e-3, "wired AP-to-AP latency", "s", lo=0.0, hi=10.0)
    backhaul_rate_bps: float = _f(1e9, "wired AP-to-AP rate", "b/s", lo=0.0, lo_open=True)

    def __post_init__(self) -> None:
        if self.cw_max < self.cw_min:
            raise ConfigError(f"wifi.cw_max: {self.cw_max} is below wifi.cw_min {self.cw_min}; must be >= cw_min")
        stages = math.log2((self.cw_max + 1) / (self.cw_min + 1))
        if abs(stages - round(stages)) > 1e-9:
            raise ConfigError("wifi.cw_max: (cw_max + 1) / (cw_min + 1) must be a power of two "
                              f"(got {self.cw_max} and cw_min {self.cw_min}), e.g. 15 and 1023")


@dataclass(frozen=True)
class DeviceClassConfig:
    """One phone class of a heterogeneous mix."""

    share: float = _f(1.0, "share of phones in this class", lo=0.0, hi=1.0)
    prefill_tps: float = _f(3000.0, "prefill speed", "tok/s", lo=0.0, lo_open=True)
    decode_tps: float = _f(48.0, "decode speed", "tok/s", lo=0.0, lo_open=True)
    ability: float = _f(-0.2, "model ability theta (probit IRT scale)", lo=-10, hi=10)


@dataclass(frozen=True)
class PhoneConfig:
    """The on-device model: one item at a time."""

    prefill_tps: float = _f(3000.0, "prefill speed (1B-class 4-bit on a phone NPU)", "tok/s", lo=0.0, lo_open=True)
    decode_tps: float = _f(48.0, "decode speed", "tok/s", lo=0.0, lo_open=True)
    ability: float = _f(-0.2, "model ability theta (probit IRT scale)", lo=-10, hi=10)
    device_classes: tuple[DeviceClassConfig, ...] = _f(
        (), "optional heterogeneous mix [{share, prefill_tps, decode_tps, ability}, ...]; empty: all phones as above")

    def __post_init__(self) -> None:
        if self.device_classes:
            total = sum(c.share for c in self.device_classes)
            if abs(total - 1.0) > 1e-6:
                raise ConfigError(f"phone.device_classes: shares sum to {total:.6g}; they must sum to 1")


#: Edge-server model presets (``edge.model``), INT4 on a consumer GPU: the one table every scenario,
#: sweep and CLI reads. Abilities are the GSM8K-calibrated thetas (docs/model.md). Speeds scale the 8B
#: default (78 tok/s decode, 3000 tok/s prefill) by the memory-bound decode and compute-bound prefill
#: laws: 3B decodes 2.26x faster (the measured 3B/8B INT4 ratio on one device, 43.1 / 19.1 tok/s) and
#: prefills 8/3x faster; 70B INT4 holds ~8.75x the 8B's weight bytes (~40 GB over two 24 GB GPUs with a
#: layer split, which adds capacity but no per-token bandwidth at batch 1), so it decodes at
#: 78 / 8.75 ~ 9 tok/s and prefills at 3000 x 8 / 70 ~ 340 tok/s. Batching (kappa, max_batch) is not
#: part of a preset.
EDGE_MODELS: dict[str, dict[str, float]] = {
    "3B": {"ability": 1.1, "decode_tps": 175.0, "prefill_tps": 8000.0},
    "8B": {"ability": 1.4, "decode_tps": 78.0, "prefill_tps": 3000.0},
    "70B": {"ability": 2.3, "decode_tps": 9.0, "prefill_tps": 340.0},
}
_EDGE_PRESET_KEYS = ("ability", "decode_tps", "prefill_tps")

#: Decision interfaces (``action_mode``): see the env docstring.
ACTION_MODES = ("item", "query", "residual")


@dataclass(frozen=True)
class EdgeConfig:
    """The edge server at every AP: continuous batching, r(B) = r1 / (1 + kappa (B - 1)).

    ``model`` names a preset of :data:`EDGE_MODELS`; the preset fills ``ability``, ``decode_tps`` and
    ``prefill_tps`` where the overrides do not set them (set ones win).
    """

    model: str = _f("8B", "model preset (3B, 8B, 70B) filling ability, decode_tps and prefill_tps unless they are "
                    "set; custom: no preset", choices=("3B", "8B", "70B", "custom"))
    prefill_tps: float = _f(3000.0, "prefill speed per stream", "tok/s", lo=0.0, lo_open=True)
    decode_tps: float = _f(78.0, "single-stream decode speed r1 (8B-class INT4)", "tok/s", lo=0.0, lo_open=True)
    kappa: float = _f(0.3, "batching slowdown per extra stream", lo=0.0, hi=10.0)
    max_batch: int = _f(16, "streams in the batch; beyond it a FIFO admission queue", lo=1, hi=4096)
    ability: float = _f(1.4, "model ability theta (3B 1.1, 8B 1.4, 70B 2.3)", lo=-10, hi=10)


@dataclass(frozen=True)
class WorkloadConfig:
    """Poisson queries, their sizes, difficulty, attachments and decomposition."""

    arrival_rate: float = _f(0.2, "Poisson query rate per phone (below 1e-6, one query in 11 days, the clock would lose "
                             "the resolution latencies need)", "1/s", lo=1e-6, hi=1000.0)
    prompt_tokens_median: float = _f(150.0, "lognormal prompt length median", "tok", lo=1.0)
    prompt_tokens_sigma: float = _f(0.5, "lognormal sigma of prompt length (0 = fixed)", lo=0.0, hi=5.0)
    answer_tokens_median: float = _f(45.0, "lognormal monolithic answer length median", "tok", lo=1.0)
    answer_tokens_sigma: float = _f(0.6, "lognormal sigma of answer length (0 = fixed)", lo=0.0, hi=5.0)
    difficulty_mean: float = _f(0.0, "mean query difficulty b", lo=-10, hi=10)
    difficulty_std: float = _f(1.0, "std of query difficulty b", lo=0.0, hi=10)
    attachment_prob: float = _f(0.3, "probability that a query carries an attachment", lo=0.0, hi=1.0)
    attachment_bytes_median: float = _f(200e3, "lognormal attachment size median", "B", lo=1.0)
    attachment_bytes_sigma: float = _f(1.0, "lognormal sigma of attachment size", lo=0.0, hi=5.0)
    subtask_count_probs: tuple[float, ...] = _f((0.2, 0.3, 0.3, 0.15, 0.05), "P(K = 1..5); K = 1: not decomposable")
    structure_probs: tuple[float, ...] = _f((0.5, 0.3, 0.2), "P(fan-out, chain, DAG)")
    subtask_output_inflation: float = _f(1.2, "subtask output = inflation x answer / K", lo=0.1, hi=10.0)
    subtask_context_tokens: int = _f(60, "subtask input = this + its predecessors' outputs", "tok", lo=1, hi=100_000)
    subtask_difficulty_offset: float = _f(-0.5, "subtask difficulty = b + offset + N(0, std^2)", lo=-10, hi=10)
    subtask_difficulty_std: float = _f(0.5, "std of the subtask difficulty draw", lo=0.0, hi=10)
    aggregation_output_tokens: int = _f(10, "output of the aggregation step", "tok", lo=1, hi=100_000)
    aggregation_difficulty: float = _f(-1.0, "difficulty of the aggregation step", lo=-10, hi=10)
    source: str = _f("auto", "synthetic (the lognormal model above), corpus (templated query texts with ground truth, "
                     "needed by the learned planner; sizes, K and structure then come from the corpus), or auto "
                     "(corpus when planner.kind is learned), or trace (arrivals and lengths replayed from workload.trace; "
                     "difficulty, attachments and decomposition drawn as for synthetic queries)",
                     choices=("auto", "synthetic", "corpus", "trace"))
    trace: str = _f("azure-conv", "source trace: azure-code, azure-conv (the Azure LLM inference traces of 2023, "
                    "shipped) or the path of a CSV file with columns TIMESTAMP,ContextTokens,GeneratedTokens; time "
                    "is scaled so each phone's mean rate is arrival_rate, the start row is random per seed")
    trace_token_scaling: str = _f("median", "trace lengths: median (scaled so their medians are prompt_tokens_median "
                                  "and answer_tokens_median) or none (the trace's own token counts)",
                                  choices=("median", "none"))

    def __post_init__(self) -> None:
        for name, n in (("subtask_count_probs", None), ("structure_probs", 3)):
            probs = getattr(self, name)
            if n is not None and len(probs) != n:
                raise ConfigError(f"workload.{name}: needs {n} probabilities (fan-out, chain, DAG), got {len(probs)}")
            negative = [p for p in probs if p < 0]
            if negative:
                raise ConfigError(f"workload.{name}: {list(probs)} has negative entries {negative}; probabilities "
                                  "must be >= 0 and sum to 1")
            if not probs or abs(sum(probs) - 1.0) > 1e-6:
                raise ConfigError(f"workload.{name}: {list(probs)} must be non-negative and sum to 1 "
                                  f"(they sum to {sum(probs):.6g})")
        if len(self.subtask_count_probs) > 8:
            raise ConfigError("workload.subtask_count_probs: at most 8 entries (K = 1..8) are allowed")


@dataclass(frozen=True)
class PlannerConfig:
    """What the scheduler is told about each query (execution always uses the truth)."""

    kind: str = _f("noisy-oracle", "oracle (exact), noisy-oracle, or learned (the shipped distilled student)",
                   choices=("oracle", "noisy-oracle", "learned"))
    length_noise_sigma: float = _f(0.35, "noisy-oracle: predicted tokens = true x exp(N(0, sigma^2))", lo=0.0, hi=5.0)
    difficulty_noise_sigma: float = _f(0.4, "noisy-oracle: predicted difficulty = true + N(0, sigma^2)", lo=0.0, hi=10)
    latency_s: float = _f(0.0, "planner time added to every query before its first transfer or compute", "s",
                          lo=0.0, hi=60.0)
    checkpoint: str = _f("", "learned: a planner checkpoint (file or folder); empty: the student shipped in the package")


@dataclass(frozen=True)
class RewardConfig:
    """Reward per finished query."""

    kind: str = _f("linear", "linear: q - w*latency - penalty*[latency > deadline]; product: q*exp(-latency/scale)",
                   choices=("linear", "product"))
    latency_weight: float = _f(0.3, "linear: weight of latency", "1/s", lo=0.0, hi=100.0)
    deadline_s: float = _f(2.0, "linear: deadline", "s", lo=0.0, lo_open=True, hi=1e6)
    deadline_penalty: float = _f(0.2, "linear: penalty for missing the deadline", lo=0.0, hi=100.0)
    latency_scale_s: float = _f(2.0, "product: latency scale", "s", lo=0.0, lo_open=True, hi=1e6)
    failure_penalty: float = _f(1.0, "reward of a failed query is minus this (faults.on_outage = fail)", lo=0.0,
                                hi=100.0)
    energy_weight: float = _f(0.0, "weight of the phone's energy for the query, subtracted from the reward (0: the "
                              "paper's reward; above 0 the observation gains each location's estimated energy)",
                              "1/J", lo=0.0, hi=100.0)


@dataclass(frozen=True)
class EnergyConfig:
    """Phone power draws above its baseline (offload_gym.sim.energy documents the sources and ranges)."""

    prefill_power_w: float = _f(5.0, "on-device prefill (compute-bound)", "W", lo=0.0, hi=100.0)
    decode_power_w: float = _f(3.5, "on-device decode (memory-bound)", "W", lo=0.0, hi=100.0)
    tx_power_w: float = _f(1.2, "Wi-Fi transmit, over the phone's own airtime", "W", lo=0.0, hi=100.0)
    rx_power_w: float = _f(0.9, "Wi-Fi receive, over the airtime of frames to the phone", "W", lo=0.0, hi=100.0)
    idle_power_w: float = _f(0.2, "Wi-Fi awake and listening while the phone waits for offloaded work", "W",
                             lo=0.0, hi=100.0)


@dataclass(frozen=True)
class EpisodeConfig:
    """Episode length."""

    queries: int = _f(200, "queries per episode; then in-flight work drains and the episode truncates", lo=1,
                      hi=10_000_000)


@dataclass(frozen=True)
class ApOutageConfig:
    """One AP (and its edge server) down for a while."""

    ap: int = _f(0, "AP index (0-based)", lo=0, hi=63)
    start_s: float = _f(0.0, "outage start (simulation time)", "s", lo=0.0)
    duration_s: float = _f(1.0, "outage length", "s", lo=0.0, lo_open=True)


@dataclass(frozen=True)
class BackgroundChangeConfig:
    """From ``start_s`` on, a cell (or every cell) has this many saturated background stations."""

    start_s: float = _f(0.0, "when the change happens", "s", lo=0.0)
    stations: int = _f(16, "background stations from then on", lo=0, hi=500)
    ap: int = _f(-1, "AP index, or -1 for every AP", lo=-1, hi=63)


@dataclass(frozen=True)
class BackhaulChangeConfig:
    """From ``start_s`` on, backhaul hops that start use this delay and rate."""

    start_s: float = _f(0.0, "when the change happens", "s", lo=0.0)
    delay_s: float = _f(0.5e-3, "AP-to-AP latency from then on", "s", lo=0.0, hi=10.0)
    rate_bps: float = _f(1e9, "AP-to-AP rate from then on", "b/s", lo=0.0, lo_open=True)


@dataclass(frozen=True)
class FaultsConfig:
    """Scheduled faults (none by default).

    While an AP is down it is masked for every decision, the phones it served re-associate to the next
    best AP that is up (or to none: local only), and every query with unfinished work at it or data
    travelling through it is, per ``on_outage``, re-run whole on its own phone from the outage time
    (``redispatch``) or reported failed (``fail``). Either way the query is reported exactly once.
    """

    ap_outages: tuple[ApOutageConfig, ...] = _f((), "AP outages [{ap, start_s, duration_s}, ...]")
    on_outage: str = _f("redispatch", "affected queries: redispatch (re-run whole on the phone) or fail",
                        choices=("redispatch", "fail"))
    background_changes: tuple[BackgroundChangeConfig, ...] = _f(
        (), "bursts of background traffic [{start_s, stations, ap}, ...]")
    backhaul_changes: tuple[BackhaulChangeConfig, ...] = _f((), "backhaul degradation [{start_s, delay_s, rate_bps}, ...]")


@dataclass(frozen=True)
class ScenarioConfig:
    """A complete scenario. ``make_config(overrides, base=...)`` builds one; ``.to_dict()`` round-trips."""

    topology: TopologyConfig = field(default_factory=TopologyConfig)
    wifi: WifiConfig = field(default_factory=WifiConfig)
    phone: PhoneConfig = field(default_factory=PhoneConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    invalid_action: str = _f("fallback", "masked action: fallback (run on the phone, counted) or raise",
                             choices=("fallback", "raise"))
    approx_estimates: bool = _f(False, "removed with the Python engine (only false is allowed; the key stays so that "
                                "saved configs load): the compiled core's exact estimates cost less than that "
                                "engine's approximation did")
    observation_format: str = _f("box", "box (a flat Box of the features) or dict (the features and the action mask "
                                 "in one Dict observation, for RLlib's and TorchRL's masking)", choices=("box", "dict"))
    observation_key: str = _f("observations", "dict format: the key of the features")
    action_mask_key: str = _f("action_mask", "dict format: the key of the action mask (MultiBinary, 1 = allowed)")
    action_mode: str = _f("item", "decision interface: item (every query, subtask and aggregation), query (one "
                          "decision per query; the built-in scheduler places subtasks and the aggregation) or "
                          "residual (query decisions with an extra action: follow the built-in scheduler)",
                          choices=ACTION_MODES)

    def __post_init__(self) -> None:
        if self.approx_estimates:
            raise ConfigError("approx_estimates: true is no longer allowed (it approximated the Python engine's "
                              "estimates, and that engine was removed; the compiled core computes them exactly in "
                              "less time); allowed: false")
        if self.planner.kind == "learned" and self.workload.source in ("synthetic", "trace"):
            raise ConfigError(f"workload.source: {self.workload.source!r} queries carry no text for planner.kind "
                              "'learned'; use 'corpus' or 'auto'")
        if self.workload.source == "trace":
            from offload_gym.sim.traces import TraceError, load_trace

            try:
                load_trace(self.workload.trace)  # a bad file fails here, naming its line and column
            except TraceError as error:
                raise ConfigError(str(error)) from None
        if self.observation_format == "dict" and (not self.observation_key or not self.action_mask_key
                                                  or self.observation_key == self.action_mask_key):
            raise ConfigError(f"observation_key, action_mask_key: {self.observation_key!r} and {self.action_mask_key!r} "
                              "must be two different, non-empty keys")
        n_aps = self.topology.n_aps
        for i, outage in enumerate(self.faults.ap_outages):
            if outage.ap >= n_aps:
                raise ConfigError(f"faults.ap_outages[{i}].ap: AP {outage.ap} does not exist; allowed 0..{n_aps - 1} "
                                  f"(topology.n_aps is {n_aps})")
        for i, change in enumerate(self.faults.background_changes):
            if change.ap >= n_aps:
                raise ConfigError(f"faults.background_changes[{i}].ap: AP {change.ap} does not exist; allowed -1 "
                                  f"(every AP) or 0..{n_aps - 1}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-able); ``make_config(cfg.to_dict()) == cfg``."""
        return _to_plain(self)

    @property
    def uses_corpus(self) -> bool:
        """Whether queries come from the text corpus (``workload.source``, ``auto`` follows the planner)."""
        return self.workload.source == "corpus" or (self.workload.source == "auto" and self.planner.kind == "learned")

    @property
    def max_subtasks(self) -> int:
        """The largest subtask count K a query can have: the length of ``workload.subtask_count_probs``, or the
        corpus's K_max when queries come from the corpus (which sets K itself)."""
        k = len(self.workload.subtask_count_probs)
        if self.uses_corpus:
            from offload_gym.planner.corpus import MAX_SUBTASKS

            k = max(k, MAX_SUBTASKS)
        return k


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def _plain_scalar(value: Any) -> Any:
    """numpy scalars as the Python scalars they hold (``np.int64(5)`` is 5, ``np.float32(0.1)`` a float)."""
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return item()
    return value


def _show(value: Any) -> str:
    """A value in an error message: huge integers and floats in short scientific form."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) < 10**12:
        return repr(value)  # floats print short already (1e+308)
    try:
        return f"{float(value):.6g}"
    except OverflowError:
        return f"an integer of {len(str(abs(value)))} digits"


def _coerce(value: Any, tp: Any, path: str, meta: Mapping[str, Any]) -> Any:
    """Check ``value`` against the annotation ``tp`` and the range metadata; return the typed value."""
    value = _plain_scalar(value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path, meta)
    if origin is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        items = list(value)
        elem = args[0]
        return tuple(_coerce(v, elem, f"{path}[{i}]", meta) for i, v in enumerate(items))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping of {tp.__name__} fields, got {type(value).__name__}")
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and (not math.isfinite(value) or not value.is_integer())):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {_show(value)}")
        _check_range(value, path, meta)  # before int(): 1e308 must not become a 309-digit number
        value = int(value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{path}: expected a finite number, got {_show(value)}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
    _check_range(value, path, meta)
    return value


def _check_range(value: Any, path: str, meta: Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{path}: {value!r} is not allowed; choose one of {list(choices)}{hint}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, (int, float)):
        below = lo is not None and (value < lo or (meta.get("lo_open") and value <= lo))
        if below or (hi is not None and value > hi):
            parts = [f"{'>' if meta.get('lo_open') else '>='} {lo}" if lo is not None else "",
                     f"<= {hi}" if hi is not None else ""]
            raise ConfigError(f"{path}: {_show(value)} is out of range; must be {' and '.join(p for p in parts if p)}")


def _build(cls: type, data: Mapping[str, Any], path: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            where = f"{path}.{key}" if path else str(key)
            hint = f" Did you mean {(path + '.' if path else '') + close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown config key.{hint} Allowed here: {', '.join(names)}")
    if cls is EdgeConfig:
        data = _with_edge_preset(data)
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            where = f"{path}.{f.name}" if path else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], where, f.metadata)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive: report the section
        raise ConfigError(f"{path or 'config'}: {exc}") from exc


def _with_edge_preset(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` of the edge section with the ``model`` preset's values where ``data`` does not set them."""
    model = data.get("model", "8B")
    if not isinstance(model, str) or model == "custom":
        return data
    preset = EDGE_MODELS.get(model)
    if preset is None:  # the choices check names the allowed ones
        return data
    return {**preset, **data}


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any], strict_at: str | None = None) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, section by section; ``overrides`` wins. With ``strict_at`` (the
    dotted path of ``base``, "" at the top), a field that both set to different values is a ConfigError."""
    out = dict(base)
    for key, value in overrides.items():
        full = None if strict_at is None else (f"{strict_at}.{key}" if strict_at else str(key))
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value, full)
        else:
            if full is not None and key in out and out[key] != value:
                raise _given_twice(full, out[key], value)
            out[key] = value
    return out


def _given_twice(path: str, first: Any, second: Any) -> ConfigError:
    return ConfigError(f"{path}: given twice ({_show(first)} and {_show(second)}, once dotted and once nested); "
                       "give it once")


SCENARIOS: dict[str, dict[str, Any]] = {
    # The paper scenario: 20 phones, 4 APs, a busy office (docs/model.md#topology-and-radio).
    "paper": {},
    # Small and short, for tests and smoke runs.
    "tiny": {"topology": {"n_users": 4, "n_aps": 2}, "episode": {"queries": 20}},
    # The paper scenario behind the other decision interfaces (action_mode).
    "paper-query": {"action_mode": "query"},
    "paper-residual": {"action_mode": "residual"},
    # Arrivals and lengths replayed from the Azure LLM inference traces of 2023, at the paper's rate per phone.
    "azure-code": {"workload": {"source": "trace", "trace": "azure-code"}},
    "azure-conv": {"workload": {"source": "trace", "trace": "azure-conv"}},
    # The paper scenario with the phone's energy in the reward (and each location's estimated energy observed).
    "paper-energy": {"reward": {"energy_weight": 0.05}},
    # The paper scenario with the action mask inside a Dict observation (RLlib, TorchRL masking without glue).
    "paper-dict": {"observation_format": "dict"},
}


def make_config(overrides: Mapping[str, Any] | ScenarioConfig | None = None, *, scenario: str = "paper") -> ScenarioConfig:
    """Validate nested overrides on top of a named scenario (a key of :data:`SCENARIOS`).

    Dotted keys are accepted at the top level too: ``{"edge.kappa": 0.1}`` equals ``{"edge": {"kappa": 0.1}}``.
    """
    if isinstance(overrides, ScenarioConfig):
        return overrides
    if scenario not in SCENARIOS:
        raise ConfigError(f"scenario: {scenario!r} is unknown; choose one of {sorted(SCENARIOS)}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {type(overrides).__name__}")
    nested = _undot(overrides or {})
    data = _merge(SCENARIOS[scenario], nested)
    return _build(ScenarioConfig, data, "")


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, section by section (dotted keys like ``"edge.kappa"`` allowed on
    both sides); ``overrides`` wins. Plain dicts in and out: validate the result with :func:`make_config`.

    An ``edge.model`` in ``overrides`` replaces the base's preset values (ability and speeds) too, unless
    ``overrides`` sets them: ``merge_overrides(cfg.to_dict(), {"edge.model": "70B"})`` is a 70B edge."""
    base_d, over_d = _undot(base), _undot(overrides)
    over_edge = over_d.get("edge")
    if isinstance(over_edge, Mapping) and "model" in over_edge and isinstance(base_d.get("edge"), Mapping):
        base_d["edge"] = {k: v for k, v in base_d["edge"].items() if k not in _EDGE_PRESET_KEYS or k in over_edge}
    return _merge(base_d, over_d)


def _undot(overrides: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Dotted keys as nested sections; the same field given twice (``"edge.kappa"`` and ``edge: {kappa}``)
    is a :class:`ConfigError`, not resolved by dict order."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{key}: conflicts with a non-section value for {part!r}")
            node = nxt
        last = parts[-1]
        full = ".".join(p for p in (where, *parts) if p)
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = _merge(node[last], _undot(value, full), strict_at=full)
        elif isinstance(value, Mapping):
            node[last] = _undot(value, full)
        else:
            if last in node and node[last] != value:
                raise _given_twice(full, node[last], value)
            node[last] = value
    return out


def check_planner_checkpoint(cfg: ScenarioConfig) -> None:
    """Load ``planner.checkpoint`` now (cached), so a bad file is one :class:`ConfigError` at construction.

    Only for ``planner.kind`` learned with a checkpoint set; the shipped student needs no check.
    """
    if cfg.planner.kind != "learned" or not cfg.planner.checkpoint:
        return
    from offload_gym.planner.learned import LearnedPlanner

    path = cfg.planner.checkpoint
    try:
        LearnedPlanner.load(path)
    except Exception as exc:  # any failure to load means "not a planner checkpoint"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(f"planner.checkpoint: cannot load {path!r} as a planner checkpoint ({type(exc).__name__}: "
                          f"{detail}); expected a file written by python -m offload_gym.planner.train, or a folder "
                          "holding student.pt and tokenizer.json") from None


def config_table_markdown() -> str:
    """The README's config table, generated from the field metadata."""
    rows = ["| key | default | unit | allowed | meaning |", "|---|---|---|---|---|"]
    for section in dataclasses.fields(ScenarioConfig):
        if dataclasses.is_dataclass(_hints(ScenarioConfig)[section.name]):
            cls = _hints(ScenarioConfig)[section.name]
            for f in dataclasses.fields(cls):
                rows.append(_row(f"{section.name}.{f.name}", f))
        else:
            rows.append(_row(section.name, section))
    return "\n".join(rows)


def _row(key: str, f: dataclasses.Field[Any]) -> str:
    meta = f.metadata
    default = f.default if f.default is not dataclasses.MISSING else "-"
    allowed = ""
    if meta.get("choices"):
        allowed = ", ".join(str(c) for c in meta["choices"])
    elif meta.get("lo") is not None or meta.get("hi") is not None:
        lo = meta.get("lo")
        lo_txt = "" if lo is None else (f"> {lo:g}" if meta.get("lo_open") else f">= {lo:g}")
        hi_txt = "" if meta.get("hi") is None else f"<= {meta['hi']:g}"
        allowed = " and ".join(t for t in (lo_txt, hi_txt) if t)
    default_txt = _to_plain(default)
    return f"| `{key}` | `{default_txt}` | {meta.get('unit', '')} | {allowed} | {meta.get('doc', '')} |"
