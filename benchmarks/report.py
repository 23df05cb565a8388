"""The appendix page's results block, generated from the committed JSON so it cannot go stale.

``book/benchmarks.md`` holds prose, and between two MyST comment lines (:data:`BEGIN`, :data:`END`)
a block of Markdown that :func:`render` writes from ``benchmarks/results/*.json``:
``python -m benchmarks --report`` rewrites it (:func:`update_page`), and ``tests/test_benchmarks.py``
checks that the page's block equals :func:`render` of the committed files (:func:`page_is_current`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import common

PAGE = common.ROOT / "book" / "benchmarks.md"
BEGIN = "% BEGIN generated results: `python -m benchmarks --report` writes this block from the JSON"
END = "% END generated results"
ORDER = ("throughput", "throughput_1t", "quality", "iwae", "book", "redraw")
TITLES = {"throughput": "Training throughput", "throughput_1t": "Training throughput, one thread",
          "quality": "Same quality", "iwae": "Evaluation: IWAE log-likelihood", "book": "Book execution",
          "gpu_paths": "The GPU paths against the CPU", "redraw": "In-page figures: redraw time"}
LABELS = {"fashion-mnist": "Fashion-MNIST", "mnist-5k": "MNIST (bundled 5k)"}


def _num(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits and thousands separators (1,234 / 12.3 / 0.123)."""
    if x is None:
        return "–"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _duration(seconds: float) -> str:
    """'45 s' under two minutes, else '3.6 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _spread(s: dict[str, Any], digits: int = 3) -> str:
    """'median (min–max)' of a :func:`benchmarks.common.summary`."""
    if s["n"] == 1:
        return _num(s["median"], digits)
    return f"{_num(s['median'], digits)} ({_num(s['min'], digits)}–{_num(s['max'], digits)})"


def _load_text(r: dict[str, Any]) -> str:
    m = r["machine"]
    loads = [x[0] for x in (m.get("load_average_start"), m.get("load_average_end")) if x]
    return "–" if not loads else "–".join(f"{x:.1f}" for x in sorted(set(loads)))


def _shared(r: dict[str, Any]) -> str:
    """A remark when other jobs ran during the benchmark: a load average above the threads it used."""
    m = r["machine"]
    loads = [x[0] for x in (m.get("load_average_start"), m.get("load_average_end")) if x]
    if loads and max(loads) >= m["torch_threads"] + 0.75:
        return " (above the benchmark's own threads: other jobs shared the machine)"
    return ""


def _machine_line(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    device = m["device_name"] if m["device"] == "cuda" else "CPU"
    gpu = f"GPU {m['gpu']}" if m.get("gpu") else "no GPU"
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB RAM, {gpu}; ran on {device} with "
            f"{m['torch_threads']} torch thread(s); Python {v['python']}, torch {v['torch']}, "
            f"torchvision {v['torchvision']}, vae_core {v['vae_core']} (commit {v['git_commit']}); "
            f"{r['date'][:10]}; 1-minute load average {_load_text(r)}{_shared(r)}")


def _throughput(r: dict[str, Any]) -> list[str]:
    res = r["results"]
    t = r["settings"]["targets"]
    rounds = ", ".join(f"{d['rounds']}" for d in res["datasets"].values())
    lines = ["### Training throughput (A: seed loop, B: `fit`, C: compute floor)", "",
             f"Median over {rounds} interleaved rounds (A B C, A B C, …; range in brackets); "
             "ratios are paired within a round. Roofline: the time of the step's matrix products at the "
             "fastest speed this machine reached on them during the run, "
             f"{_num(next(iter(res['datasets'].values()))['flops']['roofline_gflops'])} GFLOP/s with "
             f"{r['machine']['torch_threads']} thread(s) (a {res['roofline']['peak']['size']}² product: "
             f"{_num(res['roofline']['peak']['gflops'])} GFLOP/s).", "",
             "| data | examples × epochs | A samples/s | B samples/s | C samples/s | B/A speedup "
             "| B time / C time | C/A (ceiling of B/A) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in res["datasets"].items():
        s, q = d["samples_per_s"], d["ratios"]
        lines.append(f"| {LABELS.get(name, name)} | {d['n_train']:,} × {d['epochs_per_round']} "
                     f"| {_spread(s['A'])} | {_spread(s['B'])} | {_spread(s['C'])} "
                     f"| {_spread(q['speedup_B_over_A'])} | {_spread(q['time_B_over_C'])} "
                     f"| {_spread(q['speedup_C_over_A'])} |")
    lines += ["", "| data | FLOPs per epoch | roofline s/epoch | GFLOP/s A | GFLOP/s B | GFLOP/s C "
              "| B: fraction of roofline | C: fraction of roofline |", "|---|---|---|---|---|---|---|---|"]
    for name, d in res["datasets"].items():
        f = d["flops"]
        lines.append(f"| {LABELS.get(name, name)} | {f['per_epoch'] / 1e9:,.1f} G "
                     f"| {_num(f['roofline_seconds_per_epoch'])} | {_num(f['achieved_gflops']['A'])} "
                     f"| {_num(f['achieved_gflops']['B'])} | {_num(f['achieved_gflops']['C'])} "
                     f"| {f['fraction_of_roofline']['B']:.0%} | {f['fraction_of_roofline']['C']:.0%} |")
    lines.append("")
    for name, d in res["datasets"].items():
        q, sec = d["ratios"], d["seconds"]
        ba, bc, ca = (q[k]["median"] for k in ("speedup_B_over_A", "time_B_over_C", "speedup_C_over_A"))
        per_epoch = {k: sec[k]["median"] / d["epochs_per_round"] for k in "ABC"}
        fifty = {k: _duration(50 * v) for k, v in per_epoch.items()}
        lines.append(
            f"- **{LABELS.get(name, name)}, {d['n_train']:,} images**: one epoch takes "
            f"{_num(per_epoch['B'])} s with `fit` against {_num(per_epoch['A'])} s for the seed loop — "
            f"a 50-epoch run, {fifty['B']} instead of {fifty['A']} "
            f"({ba:.2f}× faster). No loop can beat the floor C ({_num(per_epoch['C'])} s an epoch): "
            f"`fit` spends {bc:.2f}× its time, so what is left to gain is in the model's arithmetic, "
            f"not in the loop (the most any loop could gain over the seed loop here is {ca:.2f}×; "
            f"the issue's aims were ≥ {t['speedup_B_over_A_min']:g}× and ≤ {t['time_B_over_C_max']:g}×).")
        per = d.get("time_per_example")
        if per:
            us, over = per["us_per_example"], per["overhead_us_per_example"]
            lines.append(f"  Per training image: the floor C takes {_num(us['C'])} µs; A spends "
                         f"{_num(over['A'])} µs more (its per-image data pipeline), B {_num(over['B'])} µs "
                         "more.")
    adam = res.get("adam_step_ms")
    if adam:
        lines.append(f"- One Adam step on the 652,824 parameters: {_num(adam['default']['median'])} ms "
                     f"(torch's default), {_num(adam['fused']['median'])} ms with `fused=True`.")
    prof = next((d["profile"] for d in res["datasets"].values() if "profile" in d), None)
    if prof:
        lines.append(f"- Profile of one epoch (torch.profiler, self time per step): B "
                     f"{_num(prof['B']['total_ms_per_step'])} ms, "
                     f"C {_num(prof['C']['total_ms_per_step'])} ms;"
                     " B's top operators: " + ", ".join(
                         f"`{o['op']}` {_num(o['ms_per_step'])}" for o in prof["B"]["top"][:6]) + ".")
    return lines


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _quality(r: dict[str, Any]) -> list[str]:
    res, st = r["results"], r["settings"]
    a, b = res["test_elbo"]["A"], res["test_elbo"]["B"]
    return ["### Same quality", "",
            f"Test ELBO (nats per image; higher is better) after {st['epochs']} epochs on "
            f"{st['n_train']:,} {LABELS.get(st['dataset'], st['dataset'])} training images, seeds "
            f"{', '.join(map(str, st['seeds']))}, evaluated on {st['n_test']:,} test images by the same "
            "code.", "", "| loop | test ELBO, mean ± sd | per seed | training seconds (median) |",
            "|---|---|---|---|",
            f"| A: seed loop | {a['mean']:.2f} ± {a['sd']:.2f} | {_values(a['values'])} "
            f"| {_num(res['train_seconds']['A']['median'])} |",
            f"| B: `fit` | {b['mean']:.2f} ± {b['sd']:.2f} | {_values(b['values'])} "
            f"| {_num(res['train_seconds']['B']['median'])} |", "",
            f"- Difference B − A: {res['difference_B_minus_A']:+.2f} nats (standard error "
            f"{res['standard_error']:.2f}): **{'agree' if res['agree'] else 'differ'}** "
            f"(rule: {st['agree_rule']})."]


def _iwae(r: dict[str, Any]) -> list[str]:
    res, st = r["results"], r["settings"]
    model = st.get("model", "a 784-400-20 Bernoulli VAE trained by the benchmark itself")
    lines = ["### Evaluation: IWAE log-likelihood", "",
             f"The model: {model}. Its log-likelihood is not the book's (chapter 6 evaluates its own, "
             "better-trained models); what matters here is the time and the memory of the evaluation.", "",
             f"k = {st['k']:,} importance samples for each of {res['n_images']:,} test images "
             f"(batches of {st['batch_size']}), one fresh process per chunk size and malloc setting; "
             f"memory: {res['runs'][0]['memory']}. malloc *kept*: freed memory stays in the process "
             "(`GLIBC_TUNABLES` as `make` sets it); *default*: glibc's defaults, which hand large freed "
             "blocks back to the kernel.", "",
             "| malloc | chunk size | seconds | of which system | page faults | images/s "
             "| extra memory (MB) | in (chunk × batch × 784) float32 tensors | mean log p(x) (nats) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in res["runs"]:
        lines.append(f"| {run['malloc']} | {run['chunk_size']:,} | {_num(run['seconds'])} "
                     f"| {_num(run['system_seconds'])} | {run['minor_page_faults']:,} "
                     f"| {_num(run['images_per_s'])} "
                     f"| {_num(run['extra_mb'])} | {run['extra_in_chunk_tensors']:.2f} "
                     f"| {run['mean_log_likelihood']:.2f} |")
    diff = res["max_abs_difference_between_chunk_sizes"]
    lines += [""]
    model = res.get("memory_model")
    if model:
        per = model["mb_per_chunk_sample"]
        lines.append(f"- Extra memory ≈ {_num(model['fixed_mb'])} MB + {_num(per)} MB × chunk size "
                     f"(a (batch × 784) float32 tensor is {_num(st['batch_size'] * 784 * 4 / 2**20)} MB): "
                     "it grows with the chunk size, not with k.")
    lines.append(f"- Largest difference between chunk sizes: {diff:.2g} nats (the same noise, summed in "
                 "a different order).")
    return lines


def _book(r: dict[str, Any]) -> list[str]:
    res, st = r["results"], r["settings"]
    target = res["chapter_target_seconds"]
    lines = ["### Book execution", ""]
    if res["notebooks"]:
        lines += [f"How long each chapter takes to compute from scratch ({st['how']}).", "",
                  f"| notebook | seconds | within {target / 60:.0f} min |", "|---|---|---|"]
        for nb in res["notebooks"]:
            ok = "yes" if nb["seconds"] <= target else "**no**"
            lines.append(f"| {nb['notebook']} | {_num(nb['seconds'])}{'' if nb['ok'] else ' (failed)'} "
                         f"| {ok} |")
        lines.append(f"| **sum** | **{_num(res['total_seconds'])}** | |")
    if res.get("build"):
        b = res["build"]
        lines += ["", f"- `make book` (renders the stored outputs): {_num(b['seconds'])} s"
                  f"{'' if b['ok'] else ' (failed)'}."]
    over = res["over_target"]
    lines += ["", "- " + (f"Every chapter computes within {target / 60:.0f} minutes." if not over else
                         f"Over {target / 60:.0f} minutes: {', '.join(over)}.")]
    return lines


def _redraw(r: dict[str, Any]) -> list[str]:
    res, st = r["results"], r["settings"]
    lines = [f"### {TITLES['redraw']}", "",
             "How long the page takes to redraw a figure after a key press or a slider move, in "
             f"milliseconds ({st['how']}). Under {st['limit_ms']:g} ms, the figure follows the hand at "
             "60 frames a second.", "", "| figure | page | median ms | range ms | interactions |",
             "|---|---|---|---|---|"]
    for name, x in res.items():
        lines.append(f"| {name} | {x['page']} | {_num(x['median'])} | {_num(x['min'])}–{_num(x['max'])} "
                     f"| {x['n']} |")
    return lines


def _gpu_paths(r: dict[str, Any]) -> list[str]:
    c = r["results"]["checks"]
    f, e, x = c["fit"], c["evaluate"], c["explorer"]
    ok = {True: "agree", False: "**differ**"}
    return [f"### {TITLES['gpu_paths']}", "",
            f"- `fit` ({r['settings']['fit']}): test ELBO {f['test_elbo_device']:.2f} on the GPU, "
            f"{f['test_elbo_cpu']:.2f} on the CPU ({ok[f['ok']]}: other random streams, so two seeds "
            f"of one training); {_num(f['seconds_device'])} s against {_num(f['seconds_cpu'])} s; same "
            f"seed twice on the GPU: largest weight difference {f['same_seed_max_weight_difference']:.2g}.",
            f"- `evaluate` ({r['settings']['evaluate']}): {e['iwae_device']:.2f} on the GPU, "
            f"{e['iwae_cpu']:.2f} on the CPU, combined Monte-Carlo standard error "
            f"{e['combined_mc_se']:.2f} ({ok[e['ok']]}).",
            f"- Explorer export: same weights {'yes' if x['same_payload'] else 'no'}, largest pixel "
            f"difference {x['max_pixel_difference'] * 255:.2f}/255 ({ok[x['ok']]})."]


RENDERERS = {"throughput": _throughput, "throughput_1t": _throughput, "quality": _quality, "iwae": _iwae,
             "book": _book, "gpu_paths": _gpu_paths, "redraw": _redraw}
GPU_ORDER = ("gpu_paths", "throughput", "quality", "iwae")


def _section(r: dict[str, Any], name: str) -> list[str]:
    lines = RENDERERS[name](r)
    if name == "throughput_1t":
        lines[0] = lines[0].replace("### Training throughput", "### Training throughput, one thread")
    quick = " **Quick (smoke-test) run.**" if r["quick"] else ""
    return lines + [f"- Machine: {_machine_line(r)}.{quick}"] + [f"- Note: {n}" for n in r["notes"]] + [""]


def render(results_dir: str | os.PathLike | None = None) -> str:
    """The generated block (without the marker lines) from the result files in ``results_dir`` (and,
    when present, the GPU check's results in its ``gpu/`` folder)."""
    parts: list[str] = []
    for name in ORDER:
        r = common.read(name, results_dir)
        if r is None:
            how = ("`python -m benchmarks redraw`" if name == "redraw" else f"`python -m benchmarks {name}`")
            parts += [f"### {TITLES[name]}", "", f"*Not run yet: {how}.*", ""]
            continue
        parts += _section(r, name)
    gpu_dir = Path(results_dir if results_dir is not None else common.RESULTS) / "gpu"
    found = [(name, common.read(name, gpu_dir)) for name in GPU_ORDER]
    found = [(name, r) for name, r in found if r is not None]
    parts += ["### On a GPU", ""]
    if not found:
        parts += ["*Not measured yet: no GPU was available. On a machine with one, "
                  "`bash benchmarks/gpu_check.sh` (under 5 minutes) runs the CUDA paths and these "
                  "benchmarks there and adds them here.*", ""]
    for name, r in found:
        section = _section(r, name)
        section[0] = section[0].replace("### ", "#### ", 1)
        parts += section
    return "\n".join(parts).rstrip() + "\n"


def split_page(text: str) -> tuple[str, str, str]:
    """(before, block, after) around the marker lines; ValueError if they are missing."""
    try:
        head, rest = text.split(BEGIN + "\n", 1)
        block, tail = rest.split(END + "\n", 1)
    except ValueError:
        raise ValueError(f"the page lacks the marker lines {BEGIN!r} … {END!r}") from None
    return head, block, tail


def update_page(page: str | os.PathLike | None = None,
                results_dir: str | os.PathLike | None = None) -> bool:
    """Rewrite the generated block of ``page`` (default :data:`PAGE`); True if it changed."""
    path = Path(page) if page is not None else PAGE
    text = path.read_text()
    head, block, tail = split_page(text)
    new = render(results_dir)
    if new == block:
        return False
    path.write_text(head + BEGIN + "\n" + new + END + "\n" + tail)
    return True


def page_is_current(page: str | os.PathLike | None = None,
                    results_dir: str | os.PathLike | None = None) -> bool:
    """Whether the page's generated block equals :func:`render` of the result files."""
    path = Path(page) if page is not None else PAGE
    return split_page(path.read_text())[1] == render(results_dir)
