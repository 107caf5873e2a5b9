"""Compare offload_gym's flow-level Wi-Fi model with ns-3.37's packet-level 802.11ax.

Runs (or reuses from ``results/ns3_raw.csv``) the ns-3 program ``wifi_offload_validation.cc`` on

* saturation: n = 1, 5, 10, 20, 50 saturated stations, HE-MCS7 20 MHz 1 SS and HE-MCS11 80 MHz 2 SS;
* upload: one station uploads a message of 2 kB, 50 kB, 200 kB or 1 MB while k = 0, 4, 16, 30 stations are
  saturated (HE-MCS11 80 MHz 2 SS),

adding ns-3 runs (new RngRun values) until each mean is known within +-5 % (95 % confidence half-width) or a
per-case wall-clock cap is reached, then evaluates the model on the same cases and writes
``results/table.md`` and ``results/comparison.png``.

The model side calls :func:`offload_gym.sim.wifi.dcf_saturation` only; the upload completion follows the
simulator's flow-level rule (``engine.py`` ``_start_hop`` / ``_cell_reschedule``): one access delay
``dcf_saturation(n, payload=min(M, 1500)).access_delay_s``, then ``M`` bytes at
``dcf_saturation(n, payload=1500).throughput_bps / n`` with ``n = k + 1``.

Usage: ``.venv/bin/python validation/ns3/run_validation.py [--model-only] [--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from offload_gym.sim import wifi  # noqa: E402

BINARY = HERE / "build" / "wifi_offload_validation"
RESULTS = HERE / "results"
RAW_CSV = RESULTS / "ns3_raw.csv"
TABLE_MD = RESULTS / "table.md"
PLOT_PNG = RESULTS / "comparison.png"

FRAME_BYTES = 1500
#: PHY cases: name -> (HE MCS, channel width MHz, spatial streams)
PHYS: dict[str, tuple[int, int, int]] = {"mcs7": (7, 20, 1), "mcs11": (11, 80, 2)}
SAT_N = (1, 5, 10, 20, 50)
UPLOAD_K = (0, 4, 16, 30)
UPLOAD_BYTES = (2_000, 50_000, 200_000, 1_000_000)
TARGET_REL_CI = 0.05
#: the engine's default frame timings (offload_gym/config.py WifiConfig), used for access="dcf"
ENGINE_TIMINGS: dict[str, float] = {
    "slot_s": 9e-6, "sifs_s": 16e-6, "difs_s": 34e-6, "cw_min": 15, "cw_max": 1023, "preamble_s": 44e-6,
    "symbol_s": 13.6e-6, "mac_header_bytes": 30, "ack_bytes": 14, "ack_rate_bps": 24e6, "ack_preamble_s": 20e-6,
    "ack_symbol_s": 4e-6,
}
RAW_FIELDS = [
    "kind", "phy", "n", "k", "msg_bytes", "run", "sim_time_s", "wall_s", "throughput_bps", "access_delay_s",
    "service_time_s", "data_tx", "sat_acked", "sat_retry_drops", "other_tx", "data_ppdu_s", "ack_ppdu_s",
    "upload_retry_drops", "completion_s", "first_ack_s",
]

# two-sided 95 % Student t quantiles by degrees of freedom
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def t95(dof: int) -> float:
    if dof <= 0:
        return math.inf
    for d in sorted(_T95):
        if dof <= d:
            return _T95[d]
    return 1.96


@dataclass
class Stat:
    mean: float
    half: float  #: 95 % CI half-width
    sd: float  #: sample standard deviation of the samples
    count: int

    @property
    def rel(self) -> float:
        return self.half / self.mean if self.mean else math.inf


def stat(samples: Iterable[float]) -> Stat:
    xs = list(samples)
    n = len(xs)
    if n == 0:
        return Stat(math.nan, math.inf, math.nan, 0)
    mean = sum(xs) / n
    if n == 1:
        return Stat(mean, math.inf, 0.0, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return Stat(mean, t95(n - 1) * sd / math.sqrt(n), sd, n)


# ----------------------------------------------------------------------------------------------- ns-3 side


def build() -> None:
    src = HERE / "wifi_offload_validation.cc"
    if BINARY.exists() and BINARY.stat().st_mtime >= src.stat().st_mtime:
        return
    subprocess.run(["bash", str(HERE / "build.sh"), str(BINARY)], check=True)


def run_ns3(args: dict[str, object]) -> tuple[dict[str, object], float]:
    cmd = ["nice", "-n", "10", str(BINARY)] + [f"--{k}={v}" for k, v in args.items()]
    t0 = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.monotonic() - t0
    return json.loads(out.strip().splitlines()[-1]), wall


def load_raw() -> list[dict[str, str]]:
    if not RAW_CSV.exists():
        return []
    with RAW_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def append_raw(row: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    new = not RAW_CSV.exists()
    with RAW_CSV.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RAW_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in RAW_FIELDS})


def sat_rows(raw: list[dict[str, str]], phy: str, n: int) -> list[dict[str, str]]:
    return [r for r in raw if r["kind"] == "sat" and r["phy"] == phy and int(r["n"]) == n]


def upload_rows(raw: list[dict[str, str]], k: int, nbytes: int) -> list[dict[str, str]]:
    return [r for r in raw if r["kind"] == "upload" and int(r["k"]) == k and int(r["msg_bytes"]) == nbytes]


def completions(rows: list[dict[str, str]]) -> list[float]:
    return [float(x) for r in rows for x in r["completion_s"].split()]


def sat_stats(rows: list[dict[str, str]]) -> tuple[Stat, Stat, Stat]:
    """Across-run statistics of throughput, mean access delay (head of line to ACK) and service time."""
    return (stat(float(r["throughput_bps"]) for r in rows), stat(float(r["access_delay_s"]) for r in rows),
            stat(float(r["service_time_s"]) for r in rows))


def sat_sweep(raw: list[dict[str, str]], cap_s: float, max_runs: int) -> None:
    for phy in PHYS:
        for n in SAT_N:
            rows = sat_rows(raw, phy, n)
            t_start = time.monotonic()
            sim_time = 1.0 if phy == "mcs7" else 0.5
            while True:
                thr, acc, _ = sat_stats(rows)
                ok = len(rows) >= 3 and thr.rel <= TARGET_REL_CI and acc.rel <= TARGET_REL_CI
                if ok or len(rows) >= max_runs or (rows and time.monotonic() - t_start > cap_s):
                    break
                run = 1 + max((int(r["run"]) for r in rows), default=0)
                res, wall = run_ns3({"mode": "sat", "phy": phy, "n": n, "run": run, "simTime": sim_time,
                                     "warmup": 0.2})
                row = {"kind": "sat", "n": n, "k": 0, "msg_bytes": 0, "run": run, "sim_time_s": sim_time,
                       "wall_s": round(wall, 2), **{k: res[k] for k in RAW_FIELDS if k in res and k not in ("n", "k")}}
                append_raw(row)
                rows.append({k: str(v) for k, v in row.items()})
                print(f"ns-3 sat {phy} n={n} run={run}: {res['throughput_bps'] / 1e6:.2f} Mb/s, "
                      f"access {res['access_delay_s'] * 1e3:.3f} ms ({wall:.1f} s)", flush=True)


def upload_sweep(raw: list[dict[str, str]], cap_s: float, max_runs: int, chunk_s: float = 1.0,
                 only_k: tuple[int, ...] = UPLOAD_K) -> None:
    for nbytes in UPLOAD_BYTES:
        for k in only_k:
            rows = upload_rows(raw, k, nbytes)
            t_start = time.monotonic()
            guess = model_upload(k, nbytes, "dcf")
            gap = 1.25e-3
            per_run = max(3, min(400, int(chunk_s / (guess + gap))))
            while True:
                s = stat(completions(rows))
                if (s.count >= 10 and s.rel <= TARGET_REL_CI) or len(rows) >= max_runs or (
                        rows and time.monotonic() - t_start > cap_s):
                    break
                run = 1 + max((int(r["run"]) for r in rows), default=0)
                res, wall = run_ns3({"mode": "upload", "phy": "mcs11", "k": k, "msgBytes": nbytes,
                                     "messages": per_run, "gapMin": 0.5e-3, "gapMax": 2e-3, "run": run,
                                     "simTime": 30.0, "warmup": 0.1})
                row = {"kind": "upload", "n": k + 1, "k": k, "msg_bytes": nbytes, "run": run,
                       "sim_time_s": res["window_s"], "wall_s": round(wall, 2),
                       **{key: res[key] for key in RAW_FIELDS if key in res and key not in ("n", "k", "msg_bytes")}}
                row["completion_s"] = " ".join(f"{x:.9g}" for x in res["completion_s"])
                row["first_ack_s"] = " ".join(f"{x:.9g}" for x in res["first_ack_s"])
                append_raw(row)
                rows.append({key: str(v) for key, v in row.items()})
                s = stat(completions(rows))
                print(f"ns-3 upload k={k} {nbytes} B run={run}: {len(res['completion_s'])} msgs, "
                      f"mean {s.mean * 1e3:.3f} ms +-{100 * s.rel:.1f}% ({wall:.1f} s)", flush=True)


# ---------------------------------------------------------------------------------------------- model side


def _has_new_kwargs() -> bool:
    params = inspect.signature(wifi.dcf_saturation.__wrapped__ if hasattr(wifi.dcf_saturation, "__wrapped__")
                               else wifi.dcf_saturation).parameters
    return "access" in params and "spatial_streams" in params


ACCESS_MODES: tuple[str, ...] = ("dcf", "edca") if _has_new_kwargs() else ("dcf",)


def model_dcf(n: int, phy: str, payload: float, access: str) -> wifi.DcfResult:
    mcs, width, nss = PHYS[phy]
    rate = wifi.phy_rate_bps(mcs, width, nss)
    if access == "dcf":
        kwargs: dict[str, object] = dict(ENGINE_TIMINGS)
        if _has_new_kwargs():
            kwargs.update(access="dcf", spatial_streams=nss)
        return wifi.dcf_saturation(n, phy_rate_bps=rate, payload_bytes=payload, **kwargs)
    # the new default path: let dcf_saturation choose AIFS, preamble by spatial streams and collision timing
    return wifi.dcf_saturation(n, phy_rate_bps=rate, payload_bytes=payload, access=access, spatial_streams=nss)


def model_upload(k: int, nbytes: int, access: str, phy: str = "mcs11") -> float:
    """The simulator's flow-level completion time of an M-byte upload with n = k + 1 contenders."""
    n = k + 1
    first = model_dcf(n, phy, min(nbytes, FRAME_BYTES), access)
    # the engine's rule (offload_gym.sim.wifi.message_access_s): alone in the cell, edca sends the first frame at once
    access_delay = (wifi.message_access_s(first, immediate_access=access == "edca")
                    if hasattr(wifi, "message_access_s") else first.access_delay_s)
    rate = model_dcf(n, phy, FRAME_BYTES, access).throughput_bps / n
    return access_delay + 8.0 * nbytes / rate


# ------------------------------------------------------------------------------------------------- reports


def _fmt(x: float, scale: float, digits: int = 3) -> str:
    return f"{x * scale:.{digits}f}"


def write_table(raw: list[dict[str, str]]) -> str:
    lines: list[str] = []
    modes = ACCESS_MODES
    head_model = " | ".join(f"model {m} | ratio {m}" for m in modes)
    sep_model = "|".join(["---:|---:"] * len(modes))
    lines.append("## Saturation (n stations, 1500-byte payloads)")
    lines.append("")
    lines.append("Throughput in Mb/s; access delay in ms = mean time from head of the queue to the ACK of the frame "
                 "(ns-3: acknowledged frames; model: `access_delay_s`). ns-3 values are means over runs +- 95 % CI "
                 "half-width; ratio = model / ns-3.")
    lines.append("")
    lines.append(f"| PHY | n | runs | ns-3 throughput | {head_model} | ns-3 access delay | {head_model} | "
                 "ns-3 service time n/rate | ns-3 retry drops |")
    lines.append(f"|---|---:|---:|---:|{sep_model}|---:|{sep_model}|---:|---:|")
    for phy in PHYS:
        for n in SAT_N:
            rows = sat_rows(raw, phy, n)
            if not rows:
                continue
            thr, acc, svc = sat_stats(rows)
            drops = sum(float(r["sat_retry_drops"]) for r in rows)
            acked = sum(float(r["sat_acked"]) for r in rows)
            m_thr = []
            m_acc = []
            for m in modes:
                res = model_dcf(n, phy, FRAME_BYTES, m)
                m_thr.append(f"{res.throughput_bps / 1e6:.2f} | {res.throughput_bps / thr.mean:.3f}")
                m_acc.append(f"{res.access_delay_s * 1e3:.3f} | {res.access_delay_s / acc.mean:.3f}")
            mcs, width, nss = PHYS[phy]
            lines.append(
                f"| HE-MCS{mcs} {width} MHz {nss} SS | {n} | {thr.count} | {thr.mean / 1e6:.2f} +- {thr.half / 1e6:.2f} "
                f"| {' | '.join(m_thr)} | {acc.mean * 1e3:.3f} +- {acc.half * 1e3:.3f} | {' | '.join(m_acc)} "
                f"| {svc.mean * 1e3:.3f} | {100 * drops / max(1.0, acked + drops):.2f} % |")
    lines.append("")
    lines.append("## Upload completion (HE-MCS11 80 MHz 2 SS, one station uploads M bytes, k saturated stations)")
    lines.append("")
    lines.append("Completion in ms from queueing the message to the ACK of its last frame; ns-3: mean over messages "
                 "+- 95 % CI half-width, sd = spread of single messages.")
    lines.append("")
    lines.append(f"| M | k | messages | ns-3 mean | ns-3 sd | {head_model} |")
    lines.append(f"|---:|---:|---:|---:|---:|{sep_model}|")
    for nbytes in UPLOAD_BYTES:
        for k in UPLOAD_K:
            xs = completions(upload_rows(raw, k, nbytes))
            if not xs:
                continue
            s = stat(xs)
            cells = []
            for m in modes:
                mod = model_upload(k, nbytes, m)
                cells.append(f"{mod * 1e3:.3f} | {mod / s.mean:.3f}")
            lines.append(f"| {nbytes / 1e3:g} kB | {k} | {s.count} | {s.mean * 1e3:.3f} +- {s.half * 1e3:.3f} "
                         f"| {s.sd * 1e3:.3f} | {' | '.join(cells)} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    TABLE_MD.write_text("# offload_gym Wi-Fi model vs ns-3.37 (generated by run_validation.py)\n\n" + text)
    return text


def write_plot(raw: list[dict[str, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    markers = {"dcf": "x", "edca": "+"}
    for phy, color in zip(PHYS, ("tab:blue", "tab:orange"), strict=True):
        ns = [n for n in SAT_N if sat_rows(raw, phy, n)]
        if not ns:
            continue
        st = [sat_stats(sat_rows(raw, phy, n)) for n in ns]
        mcs, width, nss = PHYS[phy]
        label = f"MCS{mcs} {width} MHz {nss} SS"
        axes[0].errorbar(ns, [s[0].mean / 1e6 for s in st], yerr=[s[0].half / 1e6 for s in st], fmt="o-",
                         color=color, capsize=3, label=f"ns-3 {label}")
        axes[1].errorbar(ns, [s[1].mean * 1e3 for s in st], yerr=[s[1].half * 1e3 for s in st], fmt="o-",
                         color=color, capsize=3, label=f"ns-3 {label}")
        for m in ACCESS_MODES:
            axes[0].plot(ns, [model_dcf(n, phy, FRAME_BYTES, m).throughput_bps / 1e6 for n in ns], markers[m] + "--",
                         color=color, label=f"model {m} {label}")
            axes[1].plot(ns, [model_dcf(n, phy, FRAME_BYTES, m).access_delay_s * 1e3 for n in ns], markers[m] + "--",
                         color=color, label=f"model {m} {label}")
    axes[0].set(xlabel="saturated stations n", ylabel="throughput (Mb/s)", title="Saturation throughput")
    axes[1].set(xlabel="saturated stations n", ylabel="mean access delay (ms)", title="Access delay", yscale="log")
    colors = ("tab:green", "tab:red", "tab:purple", "tab:brown")
    for nbytes, color in zip(UPLOAD_BYTES, colors, strict=True):
        ks = [k for k in UPLOAD_K if upload_rows(raw, k, nbytes)]
        if not ks:
            continue
        st2 = [stat(completions(upload_rows(raw, k, nbytes))) for k in ks]
        lower = [min(s.sd, 0.9 * s.mean) * 1e3 for s in st2]  # clipped: the axis is logarithmic
        axes[2].errorbar(ks, [s.mean * 1e3 for s in st2], yerr=[lower, [s.sd * 1e3 for s in st2]], fmt="o-", color=color,
                         capsize=3, label=f"ns-3 {nbytes / 1e3:g} kB (bars: sd)")
        for m in ACCESS_MODES:
            axes[2].plot(ks, [model_upload(k, nbytes, m) * 1e3 for k in ks], markers[m] + "--", color=color,
                         label=f"model {m} {nbytes / 1e3:g} kB")
    axes[2].set(xlabel="background saturated stations k", ylabel="completion (ms)", yscale="log",
                title="Upload completion, MCS11 80 MHz 2 SS")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(PLOT_PNG, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-only", action="store_true", help="reuse results/ns3_raw.csv; run no ns-3")
    ap.add_argument("--quick", action="store_true", help="at most 2 runs and 20 s per case (a smoke test)")
    ap.add_argument("--cap-s", type=float, default=90.0, help="wall-clock cap per case for adding ns-3 runs")
    ap.add_argument("--max-runs", type=int, default=12, help="most ns-3 runs per case")
    ap.add_argument("--upload-only", action="store_true", help="skip the saturation sweep")
    ap.add_argument("--upload-k", type=int, nargs="*", default=list(UPLOAD_K), help="background counts to run")
    ap.add_argument("--chunk-s", type=float, default=1.0, help="simulated seconds of messages per upload run")
    ns = ap.parse_args(argv)
    t0 = time.monotonic()
    raw = load_raw()
    if not ns.model_only:
        build()
        cap, max_runs = (20.0, 2) if ns.quick else (ns.cap_s, ns.max_runs)
        if not ns.upload_only:
            sat_sweep(raw, cap, max_runs)
        upload_sweep(raw, cap, max_runs, ns.chunk_s, tuple(ns.upload_k))
        raw = load_raw()
    if not raw:
        print(f"no ns-3 results in {RAW_CSV}; run without --model-only first", file=sys.stderr)
        return 1
    print(write_table(raw))
    write_plot(raw)
    print(f"wrote {TABLE_MD.relative_to(ROOT)} and {PLOT_PNG.relative_to(ROOT)} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
