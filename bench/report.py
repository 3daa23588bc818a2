"""Turn a results dict into the Markdown section appended to ``BENCHMARKS.md``."""

from __future__ import annotations

from typing import Any


def _f(x: Any, fmt: str = "{:.2f}") -> str:
    if x is None:
        return "-"
    if isinstance(x, float | int):
        return fmt.format(x)
    return str(x)


def _gflops(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:.0f}"


def machine_md(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return [
        f"- Date: {m['date_utc']}; command: `{r['command']}`",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({r.get('threads') or m['torch_threads']} torch threads), "
        f"{m['mem_gib']} GiB RAM; CPU features: {' '.join(m['cpu_flags'])}; torch CPU capability {m['torch_cpu_capability']}",
        f"- Versions: {vers}",
        f"- Load average (1/5/15 min) at start: {r['loadavg_start']}, at end: {r['loadavg_end']}",
    ]


def peak_md(p: dict[str, Any]) -> list[str]:
    lines = ["", "Matmul peak (best of reps, square matmuls of sizes " + ", ".join(map(str, p["sizes"])) + "):", ""]
    lines += ["| dtype | GFLOP/s | per size |", "|---|---:|---|"]
    for name in ("fp32", "bf16"):
        per = ", ".join(f"{n}: {_gflops(v)}" for n, v in p[name]["per_size_flops"].items())
        lines.append(f"| {name} | {_gflops(p[name]['peak_flops'])} | {per} |")
    lines.append(
        f"\nbf16 / fp32 peak: {p['bf16_over_fp32']:.2f}x; load average {p['loadavg_before']} -> {p['loadavg_after']}"
    )
    return lines


def train_md(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "Training step (forward + backward + AdamW on trainable params; one fresh process per row):",
        "",
        "| config | variant | batch | samples/s | step ms (median) | CPU s/step | model GFLOP/step | achieved GFLOP/s | util vs peak | peak RSS MiB (train delta) | first step s | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row.get('name', '?')} | {row.get('variant', '?')} | - | error: {row['error'][:80]} | | | | | | |"
            )
            continue
        lines.append(
            f"| {row['name']} | {row['variant']} | {row['batch']} | {_f(row['samples_per_s'])} | "
            f"{_f(row['step_s']['median_s'] * 1e3, '{:.1f}')} | {_f(row['cpu_s_per_step']['median_s'], '{:.3f}')} | "
            f"{_f(row['flops']['total'] / 1e9, '{:.1f}')} | "
            f"{_gflops(row['achieved_flops'])} | {_f(row.get('utilisation'), '{:.1%}')} | "
            f"{_f(row['memory']['peak_rss_mib'], '{:.0f}')} ({_f(row['memory']['train_delta_mib'], '{:.0f}')}) | "
            f"{_f(row['first_step_s'], '{:.1f}')} | {row['loadavg']} |"
        )
    return lines


def data_md(d: dict[str, Any]) -> list[str]:
    if "error" in d:
        return ["", f"Data pipeline: error: {d['error']}"]
    lines = [
        "",
        f"Data pipeline alone ({d['description']}):",
        "",
        "| num_workers | samples/s | samples/s per worker | load avg |",
        "|---:|---:|---:|---|",
    ]
    if "legacy_rows" not in d:
        for row in d["rows"]:
            lines.append(
                f"| {row['num_workers']} | {_f(row['samples_per_s'])} | {_f(row['per_worker'])} | {row['loadavg']} |"
            )
        return lines
    lines[-2:] = [
        "| num_workers | webdataset samples/s (rounds) | per worker | previous reader samples/s (rounds) | "
        "per worker | ratio | load avg (new rounds) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for new, old, cmp in zip(d["rows"], d["legacy_rows"], d["comparison"]):
        lines.append(
            f"| {new['num_workers']} | {_f(new['samples_per_s'])} {new['rounds']} | {_f(new['per_worker'])} | "
            f"{_f(old['samples_per_s'])} {old['rounds']} | {_f(old['per_worker'])} | {cmp['ratio']:.2f} | "
            f"{new['loadavg']} |"
        )
    if d.get("cpu"):
        lines += [
            "",
            "One stream in the main process, per second of process CPU time (independent of the machine's load):",
            "",
            "| reader | raw samples (read, grouped, shuffled) | decoded samples (image decode + processors) |",
            "|---|---:|---:|",
        ]
        for row in d["cpu"]:
            lines.append(f"| {row['reader']} | {row['raw_per_cpu_s']:.0f} | {row['decoded_per_cpu_s']:.1f} |")
    return lines


def chat_md(c: dict[str, Any]) -> list[str]:
    if "error" in c:
        return ["", f"Chat: error: {c['error']}"]
    lines = [
        "",
        f"Chat ({c['description']}; LLM weights in {c.get('llm_dtype', '?')}):",
        "",
        "| mode | turn | context tokens | reused from cache | time to first token ms | new tokens | tokens/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in ("reuse_cache", "recompute", "reuse_cache_retokenized"):
        for t in c.get(mode, []):
            lines.append(
                f"| {mode} | {t['turn']} | {t.get('context_tokens', '-')} | {t.get('reused_tokens', '-')} | "
                f"{_f(t['ttft_s'] * 1e3, '{:.1f}')} | "
                f"{t['new_tokens']} | {_f(t['tokens_per_s'])} |"
            )
    return lines


def gpu_md(g: dict[str, Any]) -> list[str]:
    lines = ["", f"GPU mode on {g['device']}: bf16 matmul peak {_gflops(g['peak']['bf16']['peak_flops'])} GFLOP/s", ""]
    lines += [
        "| stage | batch | samples/s | step ms | util vs bf16 peak | peak memory GiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("stage1", "stage2", "stage2_llm_grad_ckpt"):
        if name not in g:
            continue
        r = g[name]
        lines.append(
            f"| {name} | {r['batch']} | {_f(r['samples_per_s'])} | {_f(r['step_s']['median_s'] * 1e3, '{:.1f}')} | "
            f"{_f(r['utilisation_vs_bf16_peak'], '{:.1%}')} | {_f(r['peak_mem_gib'], '{:.1f}')} |"
        )
    return lines


def targets_md(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["", "| target | measured | met |", "|---|---|---|"]
    for t in targets:
        lines.append(
            f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no' if t['met'] is not None else '-'} |"
        )
    return lines


def to_markdown(r: dict[str, Any]) -> str:
    lines = [f"\n## Run of {r['machine']['date_utc']}\n"]
    lines += machine_md(r)
    if "gpu" in r:
        lines += gpu_md(r["gpu"])
    if "peak" in r:
        lines += peak_md(r["peak"])
    if "train" in r:
        lines += train_md(r["train"])
    if "data" in r:
        lines += data_md(r["data"])
    for key in ("chat", "chat_long", "chat_fp32"):
        if key in r:
            lines += chat_md(r[key])
    if r.get("targets"):
        lines += targets_md(r["targets"])
    return "\n".join(lines) + "\n"
